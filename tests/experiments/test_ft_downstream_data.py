"""ft_downstream's data: equal-sized validated / rejected / random sets from an ETL run, the SQuAD
questions it is scored on, the seeded Wikipedia sample it makes its ETL input from, and what it
reports over several training seeds (spread, a test on seed means, answer lengths)."""

from __future__ import annotations

import json

import pytest

from experiments.catalog.ft_downstream import (
    FtDownstreamConfig,
    adapter_name,
    answer_lengths,
    length_table,
    per_question_mean,
    seed_spread,
    seed_table,
    squad_questions,
    variant_folder,
    variant_sets,
)
from experiments.wikipedia_sample import write_article_sample


def _etl_run(folder, n_valid: int, n_rejected: int):
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, write_jsonl

    chunk = Chunk(chunk_id="c1", doc_id="d1", text="The red box is on the table.", position=0)
    pairs, verdicts = [], []
    for i in range(n_valid + n_rejected):
        pairs.append(QAPair(qa_id=f"q{i}", chunk_id="c1", doc_id="d1", question=f"Question {i}?", answer=f"answer {i}"))
        verdicts.append(ValidationResult(qa_id=f"q{i}", valid=i < n_valid, grounded=i < n_valid))
    write_jsonl(folder / "chunks.jsonl", [chunk])
    write_jsonl(folder / "qa_pairs.jsonl", pairs)
    write_jsonl(folder / "validation.jsonl", verdicts)
    return folder


def test_variant_sets_are_equal_sized_and_drawn_from_the_right_verdicts(tmp_path):
    run = _etl_run(tmp_path, n_valid=5, n_rejected=8)
    sets = variant_sets(run, max_pairs=100, seed=0)
    assert {k: len(v) for k, v in sets.items()} == {"validated": 5, "rejected": 5, "random": 5}
    answer_ids = {k: {int(c[-1]["content"].split()[-1]) for c in v} for k, v in sets.items()}
    assert answer_ids["validated"] == set(range(5))
    assert answer_ids["rejected"] <= set(range(5, 13))
    first = sets["validated"][0]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"].startswith("Context:\nThe red box") and "\n\nQuestion: Question" in first[1]["content"]
    assert variant_sets(run, max_pairs=100, seed=0) == sets
    assert len(variant_sets(run, max_pairs=3, seed=0)["random"]) == 3
    small = tmp_path / "small"
    small.mkdir()
    with pytest.raises(ValueError, match="need at least 2"):
        variant_sets(_etl_run(small, 1, 4), 10, 0)


@pytest.mark.shared_data
def test_squad_questions_are_answerable_and_seeded(shared_data_dir):
    path = shared_data_dir / "squad" / "dev-v2.0-3articles.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    questions = squad_questions(path, 40, seed=1)
    assert len(questions) == 40 and len({q["id"] for q in questions}) == 40
    assert all(q["answers"] and all(a in q["context"] for a in q["answers"]) for q in questions)
    assert squad_questions(path, 40, seed=1) == questions
    assert squad_questions(path, 40, seed=2) != questions


@pytest.mark.shared_data
def test_wikipedia_sample_is_seeded_text(wikipedia_articles, tmp_path):
    a = write_article_sample(wikipedia_articles, tmp_path / "a", 3, seed=5).read_text(encoding="utf-8")
    b = write_article_sample(wikipedia_articles, tmp_path / "b", 3, seed=5).read_text(encoding="utf-8")
    assert a == b
    records = [json.loads(line) for line in a.splitlines()]
    assert len(records) == 3 and all(len(r["text"]) > 500 and r["title"] for r in records)


def test_training_seeds_default_to_the_run_seed_and_keep_the_single_seed_cache(tmp_path):
    assert FtDownstreamConfig(seed=3).training_seeds() == [3]
    assert FtDownstreamConfig(train_seeds=[0, 1, 2]).training_seeds() == [0, 1, 2]
    for bad in ([], [1, 1]):
        with pytest.raises(ValueError, match="distinct"):
            FtDownstreamConfig(train_seeds=bad)
    assert adapter_name("validated", 0, [0]) == "validated"  # the published run's names and folders stay
    assert variant_folder(tmp_path, "validated", 0, [0]) == tmp_path / "variants" / "validated"
    names = {adapter_name("rejected", s, [0, 1, 2]) for s in (0, 1, 2)}
    folders = {variant_folder(tmp_path, "rejected", s, [0, 1, 2]) for s in (0, 1, 2)}
    assert len(names) == 3 and len(folders) == 3 and all(f.parent == tmp_path / "variants" for f in folders)


def _scores(means_by_variant: dict[str, list[float]], n_questions: int = 6) -> dict[str, list[float]]:
    """Per-question scores of each adapter whose question mean is the given seed mean (alternating around it)."""
    out = {}
    for variant, means in means_by_variant.items():
        for seed, mean in enumerate(means):
            out[adapter_name(variant, seed, list(range(len(means))))] = [
                mean + (0.05 if q % 2 else -0.05) for q in range(n_questions)]
    return out


def test_seed_spread_tests_the_seed_means_not_the_questions():
    seeds = [0, 1, 2]
    scores = _scores({"validated": [0.30, 0.32, 0.31], "rejected": [0.20, 0.21, 0.19], "random": [0.11, 0.51, 0.31]})
    rows = {r["variant"]: r for r in seed_spread(scores, seeds)}
    assert rows["validated"]["seed_means"] == pytest.approx({0: 0.30, 1: 0.32, 2: 0.31})
    assert rows["validated"]["sd"] == pytest.approx(0.01) and rows["random"]["sd"] == pytest.approx(0.20)
    assert (rows["random"]["min"], rows["random"]["max"]) == pytest.approx((0.11, 0.51))
    assert rows["validated"]["diff_vs_rejected"] == pytest.approx(0.11) and rows["validated"]["p"] < 0.01
    # the same mean difference for random, but its adapters disagree: not significant over 3 seeds
    assert rows["random"]["diff_vs_rejected"] == pytest.approx(0.11) and rows["random"]["p"] > 0.3
    assert rows["rejected"]["p"] is None
    assert per_question_mean(scores, "random", seeds) == pytest.approx([0.26, 0.36] * 3)
    table = seed_table("F1", list(rows.values()), seeds).splitlines()
    assert "| validated | 0.300 / 0.320 / 0.310 | 0.310 | 0.010 | 0.300–0.320 | +0.110 |" in table[4]
    assert table[5].endswith("| — |")  # rejected: the baseline
    one = {r["variant"]: r for r in seed_spread(_scores({v: [0.2] for v in ("validated", "rejected", "random")}), [0])}
    assert one["validated"]["p"] is None  # one adapter per variant: nothing to test between seeds


def test_answer_lengths_per_model_and_per_training_set(tmp_path):
    run = _etl_run(tmp_path, n_valid=4, n_rejected=4)
    sets = variant_sets(run, max_pairs=100, seed=0)
    sets["rejected"] = [c[:-1] + [{"role": "assistant", "content": "a much longer answer of seven words"}] for c in sets["rejected"]]
    questions = [{"id": "a", "answers": ["1066", "in 1066"]}, {"id": "b", "answers": ["William the Conqueror"]}]
    predictions = {"base": {"a": "It was in the year 1066.", "b": "William"},
                   "validated-seed0": {"a": "1066", "b": "William the Conqueror"},
                   "rejected-seed0": {"a": "", "b": "the Normans under William"}}
    lengths = answer_lengths(predictions, sets, questions)
    assert lengths["base"] == {"answer_words": 3.5}
    assert lengths["validated-seed0"] == {"answer_words": 2.0, "train_answer_words": 2.0}  # "answer <i>"
    assert lengths["rejected-seed0"] == {"answer_words": 2.0, "train_answer_words": 7.0}
    assert lengths["gold (shortest)"] == {"answer_words": 2.0}
    assert "| rejected-seed0 | 2.00 | 7.00 |" in length_table(lengths).splitlines()
