"""rag_quality: retrieval variants on a BEIR folder or on an ETL run's generated questions.

Variants (``VariantSpec``; default BM25, dense, hybrid RRF, hybrid weighted, hybrid with metadata
boosts) are scored per query with nDCG@10, Recall@1/5/10/100, MRR@10 and MAP@100 (trec_eval
definitions, ``liquid_shared.metrics.ir``). Every variant is compared with the **baseline, BM25**
(the standard lexical baseline of BEIR) by a paired test per metric, p-values corrected over the
variants (Holm by default), with effect sizes (Cohen's d_z) and bootstrap CIs of each mean and
of each difference.

Files: ``per_query.csv`` (variant, query, every metric), ``significance.csv`` and
``tables/significance_<metric>.tex``, ``report.md``, ``plots/``, ``timings.json``, ``dataset.json``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register
from experiments.retrieval_variants import DEFAULT_VARIANTS, VariantSpec

DEFAULT_METRICS = ["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "map@100"]


class RagQualityConfig(ExperimentConfig):
    dataset: Path | None = Field(None, description="A BEIR folder or an ETL run folder (--dataset); None = the "
                                 "default ETL run, made first if missing.")
    split: str = Field("test", description="BEIR qrels split (qrels/<split>.tsv).")
    questions: Literal["all", "valid"] = Field("all", description="ETL runs: every generated question, or only valid ones.")
    variants: list[VariantSpec] = Field(default_factory=lambda: [v.model_copy() for v in DEFAULT_VARIANTS], min_length=1,
                                        description="Retrievers to compare: {name, retriever = bm25|dense|hybrid, "
                                        "fusion = rrf|weighted, dense_weight, metadata_boost}.")
    baseline: str = Field("bm25", description="Variant every other one is tested against.")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1,
                               description="IR metrics (ndcg@k, recall@k, mrr@k, map@k, precision@k); the first is "
                               "the one report.md tabulates.")
    k: int = Field(100, ge=1, description="Documents retrieved per query (at least the largest metric cut-off).")
    candidates: int = Field(100, ge=1, description="Depth of the BM25 and dense lists that hybrid variants fuse.")
    boost_factor: float = Field(1.5, gt=0, le=100, description="Score factor per matching tag/category.")
    embedding_model: str | None = Field(None, description="Dense encoder (default: all-MiniLM-L6-v2, offline).")
    max_queries: int | None = Field(None, ge=2, description="Evaluate a seeded random subset of the queries.")
    test: Literal["paired_t", "wilcoxon", "permutation"] = Field(
        "paired_t", description="Paired test over queries of each variant against the baseline.")
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-comparison correction of the p-values over the variants (per metric).")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples for the CIs.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the bootstrap confidence intervals.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (after correction).")
    default_etl: dict[str, Any] = Field(default_factory=dict, description="EtlConfig settings for making the "
                                        "default ETL run when it is missing (e.g. {limit = 2}).")

    @field_validator("dataset")
    @classmethod
    def _dataset_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = Path(value).expanduser()
        if not value.exists():
            raise ValueError(f"dataset path {value} does not exist (give a BEIR folder or an ETL run folder)")
        if not value.is_dir():
            raise ValueError(f"dataset path {value} is not a folder (give a BEIR folder or an ETL run folder)")
        return value.resolve()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from liquid_shared.metrics import parse_metric

        return list(dict.fromkeys(parse_metric(m).name for m in value))

    @model_validator(mode="after")
    def _consistent(self) -> RagQualityConfig:
        from liquid_shared.metrics import parse_metric

        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {duplicates}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the variants {names}")
        deepest = max((parse_metric(m).k or 0) for m in self.metrics)
        if deepest > self.k:
            raise ValueError(f"k={self.k} is smaller than the deepest metric cut-off ({deepest}); raise k")
        return self


SYNTHETIC_JUDGMENTS = (
    "The judgments are synthetic: each generated question's only relevant document is the chunk it was generated "
    "from (question -> source chunk), not a human judgment. This favours retrievers that match the question's words "
    "to its source chunk (lexical overlap the generator copied) and counts every other chunk that answers the "
    "question as irrelevant; compare variants on it, do not read it as absolute retrieval quality."
)
SYNTHETIC_FLAG = "synthetic_labels"
"""A metric of value 1.0 in every variant of ``metrics.json`` (and MLflow) when the judgments are synthetic."""


def _subsample(queries: dict[str, str], qrels: dict, n: int | None, seed: int) -> tuple[dict, dict]:
    if n is None or n >= len(queries):
        return queries, qrels
    keep = sorted(random.Random(seed).sample(list(queries), n), key=list(queries).index)
    return {q: queries[q] for q in keep}, {q: qrels[q] for q in keep}


@register("rag_quality", RagQualityConfig,
          "Retrieval variants (BM25 baseline, dense, hybrid RRF/weighted, metadata boosts) on a BEIR folder or an "
          "ETL run's questions: nDCG@10, Recall@1/5/10/100, MRR@10, MAP@100, paired tests (Holm), effect sizes, "
          "bootstrap CIs.")
def run(config: RagQualityConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.eval_data import ensure_default_etl_run, load_retrieval_dataset
    from experiments.retrieval_variants import run_variants
    from experiments.significance import paired_table, tables_markdown
    from experiments.tables import metrics_table
    from liquid_shared.metrics import evaluate
    from liquid_shared.reporting import plot_paired_differences, plot_per_query
    from rag_runtime import DenseParams, RagIndex

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = config.dataset or ensure_default_etl_run(ctx.console, config.default_etl)
    timings["prepare_dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load_retrieval_dataset(source, config.split, config.questions)
    queries, qrels = _subsample(data.queries, data.qrels, config.max_queries, config.seed)
    timings["load_dataset"] = time.perf_counter() - t0
    synthetic = data.synthetic_labels
    if synthetic:  # said in every output: report, dataset.json, metrics.json, MLflow tags and metrics
        data.notes = [SYNTHETIC_JUDGMENTS, *[n for n in data.notes if n != SYNTHETIC_JUDGMENTS]]
        ctx.run.set_tags({"judgments": "synthetic", "judgments.note": SYNTHETIC_JUDGMENTS})
    described = {**data.describe(), "queries_evaluated": len(queries), "notes": data.notes,
                 "judgments": "synthetic" if synthetic else "human (BEIR qrels)"}
    ctx.write_json("dataset.json", described)
    ctx.console.print(f"dataset {data.name}: {len(data.docs)} documents, {len(queries)} queries ({data.kind})")

    needs_dense = any(v.retriever != "bm25" for v in config.variants)
    dense_params = DenseParams(embedding_model=config.embedding_model) if config.embedding_model else None
    with ctx.progress() as progress:
        t0 = time.perf_counter()
        index = RagIndex.build(data.docs, with_dense=needs_dense, dense_params=dense_params, progress=progress,
                               source=str(source), source_kind=data.kind)
        timings["build_index"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranked = run_variants(index, queries, config.variants, k=config.k, candidates=config.candidates,
                              boost_factor=config.boost_factor, progress=progress)
        timings["search_all_variants"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = {name: evaluate(run_, qrels, config.metrics) for name, run_ in ranked.runs.items()}
    timings["evaluate"] = time.perf_counter() - t0
    metrics = {name: dict(res.mean) for name, res in results.items()}
    if synthetic:
        for means in metrics.values():
            means[SYNTHETIC_FLAG] = 1.0

    rows = []
    for name, res in results.items():
        for qid in res.query_ids:
            rows.append({"variant": name, "query_id": qid, "n_relevant": sum(1 for g in qrels[qid].values() if g > 0),
                         **{m: res.per_query[m][qid] for m in config.metrics}})
    per_query = pd.DataFrame(rows)
    ctx.write_csv("per_query.csv", per_query)

    t0 = time.perf_counter()
    frames = []
    notes = list(data.notes)
    if len(queries) < 2:
        notes.append(f"no significance tests: {len(queries)} query (paired tests and bootstrap CIs need at least 2)")
    elif config.baseline in results and len(results) > 1:
        for metric in config.metrics:
            scores = {name: res.per_query[metric] for name, res in results.items()}
            frames.append(paired_table(scores, config.baseline, test=config.test, correction=config.correction,
                                       n_boot=config.n_boot, seed=config.seed, confidence=config.confidence,
                                       alpha=config.alpha, metric=metric))
    timings["significance"] = time.perf_counter() - t0
    if frames:
        significance = pd.concat(frames, ignore_index=True)
        ctx.write_csv("significance.csv", significance)
        for df in frames:
            metric = df["metric"].iloc[0]
            ctx.write_text(f"tables/significance_{metric.replace('@', '_at_')}.tex",
                           tables_markdown([df], fmt="latex", caption_prefix=f"{data.name}: retrieval variants, "))
    primary = config.metrics[0]
    scores = {name: res.per_query[primary] for name, res in results.items()}
    ctx.write_plot(f"plots/per_query_{primary.replace('@', '_at_')}.png",
                   lambda p: plot_per_query(scores, p, metric=primary, title=f"{data.name}: per-query {primary}"))
    if len(scores) > 1 and config.baseline in scores:
        ctx.write_plot(f"plots/paired_differences_{primary.replace('@', '_at_')}.png",
                       lambda p: plot_paired_differences(scores, config.baseline, p, metric=primary))

    timings.update({f"search.{name}": s for name, s in ranked.seconds.items()})
    ctx.write_json("timings.json", timings)
    ctx.run.log_metrics({f"time.{k}": v for k, v in timings.items()})
    spec_of = {v.name: v for v in config.variants}
    for name, means in metrics.items():
        params = {**spec_of[name].model_dump(), "k": config.k, "candidates": config.candidates}
        if spec_of[name].metadata_boost:
            params["boost_factor"] = config.boost_factor
        ctx.log_variant(name, means, params=params, extra_metrics={"search_seconds": ranked.seconds.get(name, 0.0)})

    if any(v.metadata_boost for v in config.variants) and not ranked.skipped:
        notes.append(f"metadata boosts applied to {ranked.boosted_queries} query rankings")
    ctx.write_text("report.md", _report(config, data, described, metrics, frames, ranked.skipped, timings,
                                        notes, metrics_table, tables_markdown))
    return ExperimentResult(metrics=metrics, skipped=ranked.skipped, notes=notes)


def _report(config, data, described, metrics, frames, skipped, timings, notes, metrics_table,
            tables_markdown) -> str:
    synthetic = data.synthetic_labels
    lines = [f"# rag_quality on {data.name}", "",
             *([f"**Synthetic judgments.** {SYNTHETIC_JUDGMENTS}", ""] if synthetic else []),
             f"{described['documents']} documents, {described['queries_evaluated']} queries "
             f"({described['judgments']} judgments in the split); source `{data.source}` ({data.kind}).",
             f"Baseline: **{config.baseline}**. Test: {config.test}, correction: {config.correction}, "
             f"{config.n_boot} bootstrap resamples, seed {config.seed}.", "",
             "## Means", "", metrics_table(metrics, config.metrics)]
    if skipped:
        lines += ["## Skipped variants", ""] + [f"- `{name}`: {reason}" for name, reason in skipped.items()] + [""]
    if frames:
        lines += ["## Against the baseline", "", tables_markdown(frames[:1]),
                  "The other metrics' tables: `significance.csv` and `tables/significance_<metric>.tex`.", ""]
    lines += ["## Timings", "", metrics_table({step: {"seconds": s} for step, s in timings.items()}, row_header="step")]
    lines += ["## Notes", ""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"
