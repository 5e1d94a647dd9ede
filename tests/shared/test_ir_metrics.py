"""liquid_shared.metrics.ir against trec_eval (pytrec_eval) and ranx, plus its documented conventions."""

from __future__ import annotations

import math
import random

import pytest

from liquid_shared.metrics.ir import IRResult, evaluate, parse_metric

CUTOFFS = (1, 3, 5, 10, 100, 1000)  # 100 and 1000 exceed every generated run (K larger than the run)
FAMILIES = ("ndcg", "precision", "recall", "map", "mrr")
TREC_NAME = {"ndcg": "ndcg_cut_{k}", "precision": "P_{k}", "recall": "recall_{k}", "map": "map_cut_{k}"}


def random_case(seed: int) -> tuple[dict, dict]:
    """Graded qrels (0-3, some queries with no relevant document), runs with many tied scores,
    queries missing from the run, and run queries that have no qrels."""
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(80)]
    qrels, run = {}, {}
    for q in range(60):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 12))
        grades = [0] * 3 if q % 7 == 0 else [0, 0, 1, 1, 2, 3]  # every 7th query: no relevant document
        qrels[qid] = {d: rng.choice(grades) for d in judged}
        if q % 11 == 5:
            continue  # judged but not retrieved
        pool = judged + rng.sample(docs, 30)
        retrieved = rng.sample(sorted(set(pool)), rng.randint(1, min(40, len(set(pool)))))
        run[qid] = {d: float(rng.randint(0, 6)) / 2 for d in retrieved}  # few distinct values: many ties
    run["not_judged"] = {"d001": 1.0}
    return run, qrels


def trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's ranking, written independently: score descending, then doc id descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_trec_eval_with_ties_unjudged_and_large_k(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier (trec_eval itself) not installed")
    run, qrels = random_case(seed)
    measures = {f"{m}.{','.join(map(str, CUTOFFS))}" for m in ("ndcg_cut", "P", "recall", "map_cut")}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures | {"recip_rank"}).evaluate(run)
    names = [f"{f}@{k}" for f in FAMILIES if f != "mrr" for k in CUTOFFS] + ["mrr"]
    ours = evaluate(run, qrels, names)

    compared = 0
    for qid in qrels:
        if qid not in run:  # trec_eval without -c skips it; we score it 0 (trec_eval -c)
            assert all(ours.per_query[name][qid] == 0.0 for name in names)
            continue
        for family in ("ndcg", "precision", "recall", "map"):
            for k in CUTOFFS:
                expected = reference[qid][TREC_NAME[family].format(k=k)]
                assert ours.per_query[f"{family}@{k}"][qid] == pytest.approx(expected, abs=1e-9), (qid, family, k)
                compared += 1
        assert ours.per_query["mrr"][qid] == pytest.approx(reference[qid]["recip_rank"], abs=1e-9)
    assert compared > 1000
    assert "not_judged" not in ours.per_query["ndcg@10"]


@pytest.mark.parametrize("k", [1, 3, 10])
def test_mrr_at_k_equals_trec_eval_recip_rank_on_the_cut_run(k: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier (trec_eval itself) not installed")
    run, qrels = random_case(7)
    cut = {q: {d: docs[d] for d in trec_order(docs)[:k]} for q, docs in run.items()}
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    ours = evaluate(run, qrels, [f"mrr@{k}"]).per_query[f"mrr@{k}"]
    for qid, values in reference.items():
        assert ours[qid] == pytest.approx(values["recip_rank"], abs=1e-9)


@pytest.mark.slow
def test_equals_ranx_when_trec_eval_is_absent() -> None:
    """Fallback reference: ranx breaks ties arbitrarily, so it gets the same ranking without ties."""
    try:
        import pytrec_eval  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("trec_eval (pytrec_eval) is the reference here; the bench compares with ranx")
    ranx = pytest.importorskip("ranx")
    run, qrels = random_case(3)
    untied = {q: {d: float(len(docs) - i) for i, d in enumerate(trec_order(docs))} for q, docs in run.items()}
    names = [f"{f}@{k}" for f in FAMILIES for k in CUTOFFS]
    reference = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(untied), names, return_mean=False, make_comparable=True)
    ours = evaluate(run, qrels, names)
    for name in names:
        for i, qid in enumerate(sorted(qrels)):
            assert ours.per_query[name][qid] == pytest.approx(float(reference[name][i]), abs=1e-9), (name, qid)


def test_ties_are_broken_by_doc_id_descending() -> None:
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0, "z": 0.5}}
    assert evaluate(run, {"q": {"a": 1}}, ["mrr"]).mean["mrr"] == pytest.approx(1 / 3)  # c, b, a, z
    assert evaluate(run, {"q": {"c": 1}}, ["mrr"]).mean["mrr"] == 1.0
    assert evaluate(run, {"q": {"z": 1}}, ["mrr"]).mean["mrr"] == pytest.approx(1 / 4)


def test_run_dict_order_does_not_matter() -> None:
    run, qrels = random_case(4)
    rng = random.Random(0)
    shuffled = {}
    for q in reversed(list(run)):
        items = list(run[q].items())
        rng.shuffle(items)
        shuffled[q] = dict(items)
    names = ["ndcg@5", "map@10", "mrr@3"]
    assert evaluate(run, qrels, names).per_query == evaluate(shuffled, qrels, names).per_query


def test_graded_ndcg_by_hand() -> None:
    # ranking: x(0), a(2), c(1); ideal gains 2, 1, 1 (z is judged but not retrieved)
    run = {"q": {"x": 3.0, "a": 2.0, "c": 1.0}}
    qrels = {"q": {"a": 2, "c": 1, "z": 1, "x": 0}}
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    result = evaluate(run, qrels, ["ndcg@3", "ndcg@1", "map", "recall@3", "precision@2"])
    assert result.mean["ndcg@3"] == pytest.approx(dcg / idcg)
    assert result.mean["ndcg@1"] == 0.0
    assert result.mean["map"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert result.mean["recall@3"] == pytest.approx(2 / 3)
    assert result.mean["precision@2"] == pytest.approx(1 / 2)


def test_query_set_conventions() -> None:
    run = {"q1": {"a": 1.0}, "extra": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q2 not retrieved, q3 has no relevant doc
    result = evaluate(run, qrels, ["ndcg@10", "precision@5"])
    assert result.query_ids == ["q1", "q2", "q3"]
    assert result.per_query["ndcg@10"] == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert result.mean["ndcg@10"] == pytest.approx(1 / 3)
    assert result.per_query["precision@5"]["q1"] == pytest.approx(1 / 5)  # divides by k, not by the run length
    assert result.scores("ndcg@10").tolist() == [1.0, 0.0, 0.0]


def test_result_type_and_names_are_normalised() -> None:
    result = evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["nDCG@10", "MAP@100"])
    assert isinstance(result, IRResult)
    assert set(result.mean) == {"ndcg@10", "map@100"}
    assert parse_metric("Recall@5").name == "recall@5"


@pytest.mark.parametrize(("name", "problem"), [
    ("bleu@4", "unknown metric"), ("ndcg@0", "cut-off must be >= 1"), ("precision", "needs a cut-off"),
    ("ndcg@x", "unknown metric"),
])
def test_bad_metric_names(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, [name])


def test_bad_inputs_name_query_and_document() -> None:
    with pytest.raises(ValueError, match=r"query 'q'.*document 'b'.*not finite"):
        evaluate({"q": {"a": 1.0, "b": float("nan")}}, {"q": {"a": 1}}, ["ndcg@10"])
    with pytest.raises(ValueError, match=r"query 'q'.*score"):
        evaluate({"q": {"a": "high"}}, {"q": {"a": 1}}, ["ndcg@10"])
    with pytest.raises(ValueError, match=r"query 'q', document 'a': relevance 0.5 is not an integer"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 0.5}}, ["ndcg@10"])
    with pytest.raises(ValueError, match="qrels is empty"):
        evaluate({"q": {"a": 1.0}}, {}, ["ndcg@10"])
    with pytest.raises(TypeError, match="run, query 'q'"):
        evaluate({"q": ["a", "b"]}, {"q": {"a": 1}}, ["ndcg@10"])
