"""``qa_generation``: the ETL's generated QA measured against people (SQuAD v2.0 human questions).

The ETL runs (stage ``qa`` only) over a seeded sample of the SQuAD paragraphs, once per QA mode
(``extractive``, ``abstractive``); each run's pairs are compared with the human questions and
answer spans of the same paragraphs. Nothing here reuses the ETL's own filters as a measure:

* **valid share** (the ETL's verdict, reported as what the pipeline keeps) and **valid pairs per
  paragraph**;
* **exact-span share**: valid answers that occur verbatim in their paragraph;
* **agreement with human answers**: for each valid pair, the best token F1 (SQuAD's) against every
  human answer of its paragraph, and the share with F1 >= 0.5; answer-type distribution (date,
  number, name, other) of generated versus human answers;
* **retrieval difficulty**: nDCG@10 of BM25 and dense (rag_runtime, all-MiniLM-L6-v2) over *all*
  paragraphs of the three articles, each question's one relevant document being its paragraph,
  for the human questions and for each mode's valid questions (a generated set much easier than
  the human one is a warning: its questions copy their paragraph's words);
* **diversity**: distinct-1/2 of the questions and the question-word distribution;
* a sample of pairs in ``report.md`` for a person to read.

Means come with bootstrap CIs (``liquid_shared.stats.bootstrap_ci``).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register

MODES = ("extractive", "abstractive")
_WH = ("what", "who", "whom", "whose", "when", "where", "which", "why", "how", "in", "other")


class QaGenerationConfig(ExperimentConfig):
    squad: Path | None = Field(None, description="SQuAD v2.0 JSON (default: $LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json).")
    paragraphs_per_article: int = Field(8, ge=1, description="Seeded sample of paragraphs per article the ETL runs on.")
    modes: list[str] = Field(default_factory=lambda: list(MODES), description="QA modes to compare.")
    runs: dict[str, Path] = Field(default_factory=dict, description="Existing ETL run folders per mode (over the "
                                  "same sampled paragraphs, files a<article>_p<paragraph>.txt); missing modes are run.")
    work_dir: Path | None = Field(None, description="Where sampled inputs and new ETL runs go (default: the output folder).")
    n_boot: int = Field(2000, ge=100, description="Bootstrap resamples for the CIs.")
    sample_size: int = Field(8, ge=0, description="Pairs per mode shown in the report.")


def answer_type(text: str) -> str:
    """date, number, name or other: a coarse answer type for comparing distributions."""
    if re.search(r"\b(1\d{3}|20\d{2})\b|January|February|March|April|May|June|July|August|September|"
                 r"October|November|December|century|centuries", text):
        return "date"
    if re.search(r"\d", text):
        return "number"
    if text[:1].isupper():
        return "name"
    return "other"


def question_word(question: str) -> str:
    first = (question.strip().split() or ["other"])[0].lower().strip("?,")
    return first if first in _WH else "other"


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(t.lower().split()[i:i + n]) for t in texts for i in range(max(0, len(t.split()) - n + 1))]
    return len(set(grams)) / len(grams) if grams else 0.0


def _shares(counter: Counter) -> dict[str, float]:
    total = sum(counter.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(counter.items())}


def sample_paragraphs(squad: dict[str, Any], per_article: int, seed: int) -> dict[str, dict[str, Any]]:
    """``{"a<i>_p<j>": paragraph}``, a seeded sample of ``per_article`` paragraphs per article."""
    rng = random.Random(seed)
    out = {}
    for ai, article in enumerate(squad["data"]):
        paras = article["paragraphs"]
        for pi in sorted(rng.sample(range(len(paras)), min(per_article, len(paras)))):
            out[f"a{ai}_p{pi:02d}"] = paras[pi]
    return out


def load_run_pairs(run: Path) -> list[dict[str, Any]]:
    """Every generated pair of an ETL run with its paragraph key, chunk text and validity."""
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

    # the finished documents' shards (docs/<id>/), so a run still in progress can be read too
    key_of, chunks, valid, pairs = {}, {}, {}, []
    for shard in sorted((run / "docs").glob("*/record.json")):
        record = json.loads(shard.read_text())
        if record.get("status") != "done":
            continue
        folder = shard.parent
        key_of[record["doc_id"]] = Path(record["source"]).stem
        chunks.update({c.chunk_id: c for c in read_jsonl(folder / "chunks.jsonl", Chunk)})
        valid.update({v.qa_id: v for v in read_jsonl(folder / "validation.jsonl", ValidationResult)})
        pairs += list(read_jsonl(folder / "qa_pairs.jsonl", QAPair))
    rows = []
    for p in pairs:
        v = valid.get(p.qa_id)
        rows.append({"key": key_of.get(p.doc_id), "question": p.question, "answer": p.answer,
                     "chunk": chunks[p.chunk_id].text, "valid": bool(v and v.valid),
                     "reasons": list(v.reasons) if v else []})
    return rows


def _ci(values: list[float], n_boot: int, seed: int) -> dict[str, float]:
    from liquid_shared.stats import bootstrap_ci

    if not values:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    ci = bootstrap_ci(values, n_boot=n_boot, seed=seed, method="percentile")
    return {"mean": round(ci.estimate, 4), "low": round(ci.low, 4), "high": round(ci.high, 4), "n": len(values)}


def retrieval_ndcg(corpus: dict[str, str], queries: dict[str, tuple[str, str]]) -> dict[str, list[float]]:
    """Per-query nDCG@10 of BM25 and dense; ``queries``: {qid: (text, relevant paragraph key)}."""
    from experiments.retrieval_variants import VariantSpec, run_variants
    from liquid_shared.metrics import evaluate
    from rag_runtime import IndexedDoc, RagIndex

    docs = [IndexedDoc(id=k, text=t) for k, t in corpus.items()]
    index = RagIndex.build(docs, with_dense=True)
    variants = [VariantSpec(name="bm25", retriever="bm25"), VariantSpec(name="dense", retriever="dense")]
    ranked = run_variants(index, {q: t for q, (t, _) in queries.items()}, variants, k=10, candidates=10, boost_factor=1.0)
    qrels = {q: {rel: 1} for q, (_, rel) in queries.items()}
    out = {}
    for name, run_ in ranked.runs.items():
        res = evaluate(run_, qrels, ["ndcg@10"])
        out[name] = [res.per_query["ndcg@10"][q] for q in res.query_ids]
    return out


@register("qa_generation", QaGenerationConfig,
          "Generated QA (extractive vs abstractive) against SQuAD's human questions: valid share, exact spans, "
          "agreement with human answers, retrieval difficulty (nDCG@10 BM25/dense), diversity, a sample; CIs.")
def run(config: QaGenerationConfig, ctx: RunContext) -> ExperimentResult:
    from liquid_shared.config import get_settings
    from liquid_shared.metrics import token_f1

    squad_path = config.squad or Path(get_settings().data_dir) / "squad" / "dev-v2.0-3articles.json"
    if not squad_path.is_file():
        raise FileNotFoundError(f"SQuAD file {squad_path} not found (set --squad or LIQUID_DATA_DIR)")
    squad = json.loads(squad_path.read_text())
    paragraphs = sample_paragraphs(squad, config.paragraphs_per_article, config.seed)
    work = config.work_dir or ctx.output_dir
    runs = dict(config.runs)
    for mode in config.modes:
        if mode not in runs:
            from experiments.eval_data import run_etl_into

            inputs = work / "squad_input"
            inputs.mkdir(parents=True, exist_ok=True)
            for key, para in paragraphs.items():
                (inputs / f"{key}.txt").write_text(para["context"] + "\n", encoding="utf-8")
            t0 = time.perf_counter()
            runs[mode] = run_etl_into(work / f"etl_{mode}", ctx.console, input_dir=inputs, stages=("qa",), qa_mode=mode)
            ctx.console.print(f"ETL {mode}: {time.perf_counter() - t0:.0f} s")

    human_q: dict[str, tuple[str, str]] = {}
    n = 0
    for key, para in paragraphs.items():
        for q in para["qas"]:
            if not q["is_impossible"]:
                human_q[f"h{n}"] = (q["question"], key)
                n += 1
    human_answers = {key: [a["text"] for q in p["qas"] for a in q["answers"]] for key, p in paragraphs.items()}
    corpus = {f"a{ai}_p{pi:02d}": p["context"] for ai, a in enumerate(squad["data"]) for pi, p in enumerate(a["paragraphs"])}

    query_sets: dict[str, dict[str, tuple[str, str]]] = {"human": human_q}
    metrics: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    seed = config.seed
    for mode, folder in runs.items():
        pairs = [p for p in load_run_pairs(Path(folder)) if p["key"] in paragraphs]
        valid = [p for p in pairs if p["valid"]]
        per_para = Counter(p["key"] for p in valid)
        agree = [max(token_f1(p["answer"], human_answers[p["key"]]), 0.0) for p in valid if human_answers[p["key"]]]
        details[mode] = {
            "pairs": len(pairs), "valid": len(valid),
            "valid_share": _ci([float(p["valid"]) for p in pairs], config.n_boot, seed),
            "valid_per_paragraph": _ci([float(per_para.get(k, 0)) for k in paragraphs], config.n_boot, seed),
            "exact_span_share": _ci([float(p["answer"] in p["chunk"]) for p in valid], config.n_boot, seed),
            "human_answer_f1": _ci(agree, config.n_boot, seed),
            "human_answer_overlap": _ci([float(f >= 0.5) for f in agree], config.n_boot, seed),
            "answer_types": _shares(Counter(answer_type(p["answer"]) for p in valid)),
            "question_words": _shares(Counter(question_word(p["question"]) for p in valid)),
            "distinct_1": round(distinct_n([p["question"] for p in valid], 1), 3),
            "distinct_2": round(distinct_n([p["question"] for p in valid], 2), 3),
            "rejection_reasons": _shares(Counter(r.split(":")[0].split(" (")[0] for p in pairs for r in p["reasons"])),
        }
        query_sets[mode] = {f"{mode}{i}": (p["question"], p["key"]) for i, p in enumerate(valid)}
        samples[mode] = random.Random(seed).sample(pairs, min(config.sample_size, len(pairs)))
    human_texts = [t for t, _ in human_q.values()]
    details["human"] = {
        "questions": len(human_q),
        "answer_types": _shares(Counter(answer_type(q["answers"][0]["text"]) for p in paragraphs.values()
                                        for q in p["qas"] if not q["is_impossible"])),
        "question_words": _shares(Counter(question_word(t) for t in human_texts)),
        "distinct_1": round(distinct_n(human_texts, 1), 3), "distinct_2": round(distinct_n(human_texts, 2), 3),
    }
    for name, queries in query_sets.items():
        if len(queries) < 2:
            details[name]["retrieval"] = "fewer than 2 questions"
            continue
        ndcg = retrieval_ndcg(corpus, queries)
        details[name]["retrieval"] = {r: _ci(v, config.n_boot, seed) for r, v in ndcg.items()}
    for name, d in details.items():
        m = {k: d[k]["mean"] for k in ("valid_share", "valid_per_paragraph", "exact_span_share",
                                        "human_answer_f1", "human_answer_overlap") if k in d}
        m.update({"distinct_1": d["distinct_1"], "distinct_2": d["distinct_2"]})
        if isinstance(d.get("retrieval"), dict):
            m.update({f"ndcg@10.{r}": v["mean"] for r, v in d["retrieval"].items()})
        metrics[name] = m
    ctx.write_json("details.json", details)
    ctx.write_json("samples.json", samples)
    ctx.write_text("report.md", _report(details, samples, len(paragraphs), len(corpus)))
    return ExperimentResult(metrics=metrics, notes=[
        "valid share is the ETL's own verdict (what it keeps); agreement, retrieval and diversity are measured "
        "against the human SQuAD questions and answers, independent of the generator"])


def _fmt(ci: Any) -> str:
    return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] (n={ci['n']})" if isinstance(ci, dict) else str(ci)


def _report(details: dict[str, Any], samples: dict[str, list[dict[str, Any]]], n_paragraphs: int, n_corpus: int) -> str:
    lines = ["# qa_generation: generated QA against SQuAD's human questions", "",
             f"{n_paragraphs} sampled paragraphs; retrieval over all {n_corpus} paragraphs of the articles "
             "(each question's one relevant document: its paragraph). Means with 95 % bootstrap CIs.", ""]
    keys = ("valid_share", "valid_per_paragraph", "exact_span_share", "human_answer_f1", "human_answer_overlap")
    for name, d in details.items():
        lines += [f"## {name}", ""]
        for k in keys:
            if k in d:
                lines.append(f"- {k}: {_fmt(d[k])}")
        if isinstance(d.get("retrieval"), dict):
            lines += [f"- nDCG@10 {r}: {_fmt(v)}" for r, v in d["retrieval"].items()]
        for k in ("answer_types", "question_words", "distinct_1", "distinct_2", "rejection_reasons", "pairs", "valid"):
            if k in d:
                lines.append(f"- {k}: {d[k]}")
        lines.append("")
    for mode, rows in samples.items():
        lines += [f"## Sample of {mode} pairs", "", "| valid | question | answer | reasons |", "|---|---|---|---|"]
        lines += [f"| {r['valid']} | {r['question']} | {r['answer']} | {'; '.join(r['reasons'])[:160]} |" for r in rows]
        lines.append("")
    return "\n".join(lines) + "\n"
