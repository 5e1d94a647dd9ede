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
* a sample of pairs in ``report.md`` for a person to read;
* **cost**: the ETL's processing seconds per chunk of each run (from its ``report.json``).

With ``wikipedia_articles`` > 0, each mode also runs over a seeded sample of the shared Wikipedia
articles (their first ``max_chunks_per_doc`` chunks), which have no human questions: valid share,
valid pairs per chunk, exact-span share, diversity, rejection reasons, cost and a sample.
Finished ETL runs in the work folder are reused, so an interrupted invocation resumes.

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
    wikipedia_articles: int = Field(0, ge=0, description="Also run each mode over a seeded sample of this many shared "
                                    "Wikipedia articles (no human questions there: valid share, exact spans, diversity, "
                                    "a sample); 0 = SQuAD only.")
    wikipedia: Path | None = Field(None, description="Wikipedia articles JSONL (default: "
                                   "$LIQUID_DATA_DIR/wikipedia/articles.jsonl).")
    max_chunks_per_doc: int | None = Field(8, ge=1, description="Chunks per Wikipedia article the ETL processes "
                                           "(its first ones); None = all.")
    wikipedia_runs: dict[str, Path] = Field(default_factory=dict, description="Existing Wikipedia ETL run folders per "
                                            "mode (over the same seeded articles); missing modes are run.")


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


def _ci(values: list[float], n_boot: int, seed: int) -> dict[str, float]:
    from liquid_shared.stats import bootstrap_ci

    if len(values) < 2:  # no interval from one value
        mean = values[0] if values else float("nan")
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": len(values)}
    ci = bootstrap_ci(values, n_boot=n_boot, seed=seed, method="percentile")
    return {"mean": round(ci.estimate, 4), "low": round(ci.low, 4), "high": round(ci.high, 4), "n": len(values)}


def _timing(run: Path, n_chunks: int) -> dict[str, float]:
    """Processing seconds of the run's last invocation and per chunk it processed (``report.json``)."""
    try:
        this_run = json.loads((Path(run) / "report.json").read_text())["this_run"]
    except (OSError, KeyError, json.JSONDecodeError):
        return {}
    seconds, chunks = this_run.get("processing_seconds"), this_run.get("chunks_processed") or n_chunks
    if not seconds or not chunks:
        return {}
    return {"processing_seconds": round(seconds, 1), "seconds_per_chunk": round(seconds / chunks, 2)}


def _pair_details(pairs: list[dict[str, Any]], n_chunks: int, n_boot: int, seed: int) -> dict[str, Any]:
    """What every mode reports, with or without human references."""
    valid = [p for p in pairs if p["valid"]]
    texts = [p["question"] for p in valid]
    return {
        "pairs": len(pairs), "valid": len(valid), "chunks": n_chunks,
        "valid_share": _ci([float(p["valid"]) for p in pairs], n_boot, seed),
        "valid_per_chunk": round(len(valid) / n_chunks, 3) if n_chunks else float("nan"),
        "exact_span_share": _ci([float(p["answer"] in p["chunk"]) for p in valid], n_boot, seed),
        "answer_types": _shares(Counter(answer_type(p["answer"]) for p in valid)),
        "question_words": _shares(Counter(question_word(t) for t in texts)),
        "distinct_1": round(distinct_n(texts, 1), 3),
        "distinct_2": round(distinct_n(texts, 2), 3),
        "rejection_reasons": _shares(Counter(r.split(":")[0].split(" (")[0] for p in pairs for r in p["reasons"])),
    }


def _etl_run(folder: Path, inputs: Path, mode: str, ctx: RunContext, **etl: Any) -> Path:
    from experiments.eval_data import is_finished_etl_run, run_etl_into

    if is_finished_etl_run(folder):  # made by an earlier, interrupted invocation: reused as it is
        ctx.console.print(f"ETL {mode}: reusing the finished run {folder}")
        return folder
    t0 = time.perf_counter()
    run_etl_into(folder, ctx.console, input_dir=inputs, stages=("qa",), qa_mode=mode, **etl)
    ctx.console.print(f"ETL {mode} into {folder}: {time.perf_counter() - t0:.0f} s")
    return folder


@register("qa_generation", QaGenerationConfig,
          "Generated QA (extractive vs abstractive) against SQuAD's human questions: valid share, exact spans, "
          "agreement with human answers, retrieval difficulty (nDCG@10 BM25/dense), diversity, a sample; CIs. "
          "Optionally the same modes on Wikipedia articles (no human questions).")
def run(config: QaGenerationConfig, ctx: RunContext) -> ExperimentResult:
    from experiments.squad_eval import (
        article_corpus,
        count_done_chunks,
        human_questions,
        load_run_pairs,
        load_squad,
        retrieval_ndcg,
        sample_paragraphs,
        write_paragraph_inputs,
    )
    from liquid_shared.metrics import token_f1

    squad = load_squad(config.squad)
    paragraphs = sample_paragraphs(squad, config.paragraphs_per_article, config.seed)
    work = config.work_dir or ctx.output_dir
    runs = dict(config.runs)
    missing = [m for m in config.modes if m not in runs]
    if missing:
        inputs = write_paragraph_inputs(paragraphs, work / "squad_input")
        for mode in missing:
            runs[mode] = _etl_run(work / f"etl_{mode}", inputs, mode, ctx)

    human = human_questions(paragraphs)
    human_q = {q: (h["text"], h["key"]) for q, h in human.items()}
    human_answers = {key: [a["text"] for q in p["qas"] for a in q["answers"]] for key, p in paragraphs.items()}
    corpus = article_corpus(squad)

    query_sets: dict[str, dict[str, tuple[str, str]]] = {"human": human_q}
    details: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    seed = config.seed
    for mode, folder in runs.items():
        pairs = [p for p in load_run_pairs(Path(folder)) if p["key"] in paragraphs]
        valid = [p for p in pairs if p["valid"]]
        per_para = Counter(p["key"] for p in valid)
        agree = [max(token_f1(p["answer"], human_answers[p["key"]]), 0.0) for p in valid if human_answers[p["key"]]]
        n_chunks = count_done_chunks(Path(folder))
        details[mode] = {
            **_pair_details(pairs, n_chunks, config.n_boot, seed),
            "valid_per_paragraph": _ci([float(per_para.get(k, 0)) for k in paragraphs], config.n_boot, seed),
            "human_answer_f1": _ci(agree, config.n_boot, seed),
            "human_answer_overlap": _ci([float(f >= 0.5) for f in agree], config.n_boot, seed),
            **_timing(Path(folder), n_chunks),
        }
        query_sets[mode] = {f"{mode}{i}": (p["question"], p["key"]) for i, p in enumerate(valid)}
        samples[mode] = random.Random(seed).sample(pairs, min(config.sample_size, len(pairs)))
    human_texts = [t for t, _ in human_q.values()]
    details["human"] = {
        "questions": len(human_q),
        "answer_types": _shares(Counter(answer_type(h["answers"][0]) for h in human.values() if h["answers"])),
        "question_words": _shares(Counter(question_word(t) for t in human_texts)),
        "distinct_1": round(distinct_n(human_texts, 1), 3), "distinct_2": round(distinct_n(human_texts, 2), 3),
    }
    for name, queries in query_sets.items():
        if len(queries) < 2:
            details[name]["retrieval"] = "fewer than 2 questions"
            continue
        ndcg = retrieval_ndcg(corpus, queries)
        details[name]["retrieval"] = {r: _ci(list(v.values()), config.n_boot, seed) for r, v in ndcg.items()}

    if config.wikipedia_articles:
        wiki_runs = _wikipedia_runs(config, work, ctx)
        for mode, folder in wiki_runs.items():
            pairs = load_run_pairs(Path(folder))
            n_chunks = count_done_chunks(Path(folder))
            details[f"wikipedia_{mode}"] = {**_pair_details(pairs, n_chunks, config.n_boot, seed),
                                            **_timing(Path(folder), n_chunks)}
            samples[f"wikipedia_{mode}"] = random.Random(seed).sample(pairs, min(config.sample_size, len(pairs)))

    metrics: dict[str, dict[str, float]] = {}
    for name, d in details.items():
        m = {k: d[k]["mean"] for k in ("valid_share", "valid_per_paragraph", "exact_span_share",
                                        "human_answer_f1", "human_answer_overlap") if k in d}
        m.update({k: d[k] for k in ("valid_per_chunk", "distinct_1", "distinct_2", "seconds_per_chunk") if k in d})
        if isinstance(d.get("retrieval"), dict):
            m.update({f"ndcg@10.{r}": v["mean"] for r, v in d["retrieval"].items()})
        metrics[name] = m
    ctx.write_json("details.json", details)
    ctx.write_json("samples.json", samples)
    ctx.write_text("report.md", _report(details, samples, len(paragraphs), len(corpus)))
    return ExperimentResult(metrics=metrics, notes=[
        "valid share is the ETL's own verdict (what it keeps); agreement, retrieval and diversity are measured "
        "against the human SQuAD questions and answers, independent of the generator"])


def _wikipedia_runs(config: QaGenerationConfig, work: Path, ctx: RunContext) -> dict[str, Path]:
    from experiments.eval_data import shared_data_file
    from experiments.wikipedia_sample import write_article_sample

    runs = dict(config.wikipedia_runs)
    missing = [m for m in config.modes if m not in runs]
    if missing:
        articles = config.wikipedia or shared_data_file("wikipedia/articles.jsonl")
        if articles is None:
            raise FileNotFoundError("wikipedia_articles > 0 needs the `wikipedia` path or LIQUID_DATA_DIR")
        if not Path(articles).is_file():
            raise FileNotFoundError(f"Wikipedia articles {articles} not found (set `wikipedia` or LIQUID_DATA_DIR)")
        inputs = write_article_sample(Path(articles), work / "wikipedia_input", config.wikipedia_articles, config.seed)
        for mode in missing:
            runs[mode] = _etl_run(work / f"etl_wikipedia_{mode}", inputs.parent, mode, ctx,
                                  max_chunks_per_doc=config.max_chunks_per_doc)
    return runs


def _fmt(ci: Any) -> str:
    return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] (n={ci['n']})" if isinstance(ci, dict) else str(ci)


def _report(details: dict[str, Any], samples: dict[str, list[dict[str, Any]]], n_paragraphs: int, n_corpus: int) -> str:
    lines = ["# qa_generation: generated QA against SQuAD's human questions", "",
             f"{n_paragraphs} sampled paragraphs; retrieval over all {n_corpus} paragraphs of the articles "
             "(each question's one relevant document: its paragraph). Means with 95 % bootstrap CIs.", ""]
    keys = ("valid_share", "valid_per_paragraph", "exact_span_share", "human_answer_f1", "human_answer_overlap")
    extra = ("valid_per_chunk", "answer_types", "question_words", "distinct_1", "distinct_2", "rejection_reasons",
             "pairs", "valid", "chunks", "processing_seconds", "seconds_per_chunk")
    for name, d in details.items():
        lines += [f"## {name}", ""]
        for k in keys:
            if k in d:
                lines.append(f"- {k}: {_fmt(d[k])}")
        if isinstance(d.get("retrieval"), dict):
            lines += [f"- nDCG@10 {r}: {_fmt(v)}" for r, v in d["retrieval"].items()]
        for k in extra:
            if k in d:
                lines.append(f"- {k}: {d[k]}")
        lines.append("")
    for mode, rows in samples.items():
        lines += [f"## Sample of {mode} pairs", "", "| valid | question | answer | reasons |", "|---|---|---|---|"]
        lines += [f"| {r['valid']} | {r['question']} | {r['answer']} | {'; '.join(r['reasons'])[:160]} |" for r in rows]
        lines.append("")
    return "\n".join(lines) + "\n"
