"""dual_pipeline: one ETL graph making RAG and fine-tuning outputs, against two separate pipelines.

Three pipelines really run on the same documents, each in its own process
(``experiments.etl_worker``), ``n_runs`` times, interleaved:

* ``unified``: every stage (RAG stages and fine-tuning stages) in one graph;
* ``rag_only``: the RAG stages (metadata, classify, taxonomy, facts, summary), which with the
  chunks and the index are what retrieval needs;
* ``ft_only``: the fine-tuning stages (QA generation and the judge).

``separate`` is the sum of ``rag_only`` and ``ft_only`` (the larger of the two for peak memory,
as they would run one after the other). Measured: wall time of the process, its CPU time (user +
system, which unlike wall time does not grow when other processes share the cores), processing time,
model requests (every ``generate`` row, retries included), generate batches, tokens, model loads,
peak RSS; ``ratio_separate_over_unified`` divides them per run and averages. ``agreement``
compares the outputs: identical chunks and index, the share of chunks whose summary and metadata
match between ``unified`` and ``rag_only``, the Jaccard overlap of QA pairs and fine-tuning
samples between ``unified`` and ``ft_only``, and the share of common QA pairs with the same
validation verdict. Decoding is greedy by default (``temperature = 0``) so that agreement is
expected; what still differs comes from batching (different batch neighbours, padding).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from experiments.base import ExperimentResult, RunContext
from experiments.documents import DocumentsConfig
from experiments.registry import register

RAG_STAGES = ["metadata", "classify", "taxonomy", "facts", "summary"]
FT_STAGES = ["qa", "judge"]
VARIANTS = ("unified", "rag_only", "ft_only")
SUMMED = ("wall_seconds", "processing_seconds", "cpu_seconds", "stage_calls", "model_requests", "prefill_batches",
          "input_tokens", "output_tokens", "tokens", "model_loads")
RATIOS = ("wall_seconds", "processing_seconds", "cpu_seconds", "model_requests", "prefill_batches", "tokens",
          "model_loads", "peak_rss_mb")


class DualPipelineConfig(DocumentsConfig):
    limit: int | None = Field(None, ge=1, description="Only the first N documents (sorted by path).")
    profile: str = Field("offline", description="Model profile of the ETL.")
    temperature: float | None = Field(0.0, ge=0, description="Decoding temperature; 0 = greedy (default).")
    concurrency: int = Field(8, ge=1, le=256, description="LLM requests in flight per stage (the ETL's concurrency).")
    max_chunk_tokens: int = Field(160, ge=16, le=2048, description="Token budget of one chunk.")
    qa_per_chunk: int = Field(2, ge=1, le=4, description="Most QA pairs generated per chunk.")
    rag_stages: list[str] = Field(default_factory=lambda: list(RAG_STAGES), min_length=1,
                                  description="LLM stages of the RAG-only pipeline.")
    ft_stages: list[str] = Field(default_factory=lambda: list(FT_STAGES), min_length=1,
                                 description="LLM stages of the fine-tuning-only pipeline.")
    timeout_s: float | None = Field(None, gt=0, description="Per pipeline run; None = no limit.")

    @model_validator(mode="after")
    def _stages(self) -> DualPipelineConfig:
        from etl_pipeline import LLM_STAGES

        for name in ("rag_stages", "ft_stages"):
            unknown = sorted(set(getattr(self, name)) - set(LLM_STAGES))
            if unknown:
                raise ValueError(f"{name}: unknown stage(s) {unknown}; choose from {list(LLM_STAGES)}")
        overlap = sorted(set(self.rag_stages) & set(self.ft_stages))
        if overlap:
            raise ValueError(f"rag_stages and ft_stages overlap on {overlap}; each stage belongs to one pipeline")
        return self

    def stages_of(self, variant: str) -> list[str]:
        return {"unified": self.rag_stages + self.ft_stages, "rag_only": self.rag_stages,
                "ft_only": self.ft_stages}[variant]


def _read(path: Path, model) -> list[Any]:
    from liquid_shared.schemas import read_jsonl

    return list(read_jsonl(path, model)) if path.is_file() else []


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def agreement(unified: Path, rag_only: Path, ft_only: Path) -> dict[str, float]:
    """How far the separate pipelines' outputs agree with the unified one's (see the module docstring)."""
    from liquid_shared.schemas import (
        Chunk,
        ChunkMetadata,
        FineTuneSample,
        QAPair,
        Summary,
        ValidationResult,
    )
    from rag_runtime import IndexFormatError, RagIndex

    chunk_ids = [[c.chunk_id for c in _read(d / "chunks.jsonl", Chunk)] for d in (unified, rag_only, ft_only)]
    index_ids = []
    for d in (unified, rag_only, ft_only):
        try:
            index_ids.append(RagIndex.load(d, with_dense=False).store.ids)
        except IndexFormatError:
            index_ids.append(None)
    u_summary = {s.chunk_id: s.summary for s in _read(unified / "summaries.jsonl", Summary)}
    r_summary = {s.chunk_id: s.summary for s in _read(rag_only / "summaries.jsonl", Summary)}
    fields = ("tags", "keywords", "entities", "importance", "category", "taxonomy", "facts")
    u_meta = {m.chunk_id: tuple(str(getattr(m, f)) for f in fields) for m in _read(unified / "metadata.jsonl", ChunkMetadata)}
    r_meta = {m.chunk_id: tuple(str(getattr(m, f)) for f in fields) for m in _read(rag_only / "metadata.jsonl", ChunkMetadata)}
    u_qa = {q.qa_id for q in _read(unified / "qa_pairs.jsonl", QAPair)}
    f_qa = {q.qa_id for q in _read(ft_only / "qa_pairs.jsonl", QAPair)}
    u_ft = {s.sample_id for s in _read(unified / "ft" / "samples.jsonl", FineTuneSample)}
    f_ft = {s.sample_id for s in _read(ft_only / "ft" / "samples.jsonl", FineTuneSample)}
    u_valid = {v.qa_id: v.valid for v in _read(unified / "validation.jsonl", ValidationResult)}
    f_valid = {v.qa_id: v.valid for v in _read(ft_only / "validation.jsonl", ValidationResult)}
    common = set(u_valid) & set(f_valid)
    return {
        "chunks_identical": float(chunk_ids[0] == chunk_ids[1] == chunk_ids[2]),
        "index_identical": float(index_ids[0] is not None and index_ids[0] == index_ids[1] == index_ids[2]),
        "summary_agreement": (sum(u_summary[c] == r_summary.get(c) for c in u_summary) / len(u_summary)
                              if u_summary else float("nan")),
        "metadata_agreement": (sum(u_meta[c] == r_meta.get(c) for c in u_meta) / len(u_meta)
                               if u_meta else float("nan")),
        "qa_pairs_jaccard": _jaccard(u_qa, f_qa),
        "ft_samples_jaccard": _jaccard(u_ft, f_ft),
        "validation_agreement": (sum(u_valid[q] == f_valid[q] for q in common) / len(common)
                                 if common else float("nan")),
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@register("dual_pipeline", DualPipelineConfig,
          "Unified ETL graph (RAG + fine-tuning outputs) vs separate RAG-only and fine-tuning-only pipelines on the "
          "same documents: wall time, model calls, tokens, peak memory, output agreement.")
def run(config: DualPipelineConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.etl_runs import cost_metrics, run_in_worker
    from experiments.etl_worker import WorkerSpec
    from experiments.plots import plot_metric_bars
    from experiments.tables import metrics_table

    per_run: dict[str, list[dict[str, float]]] = {v: [] for v in (*VARIANTS, "separate")}
    ratios: list[dict[str, float]] = []
    agreements: list[dict[str, float]] = []
    rows = []
    with ctx.progress() as progress:
        task = progress.add_task("pipeline runs", total=config.n_runs * len(VARIANTS))
        for i in range(config.n_runs):
            folders = {}
            for variant in VARIANTS:
                etl = {"input_dir": str(config.documents), "profile": config.profile, "limit": config.limit,
                       "concurrency": config.concurrency, "max_chunk_tokens": config.max_chunk_tokens,
                       "qa_per_chunk": config.qa_per_chunk, "temperature": config.temperature,
                       "stages": config.stages_of(variant)}
                folder = ctx.path(f"etl_runs/run{i}/{variant}")
                result = run_in_worker(f"{variant} (run {i + 1})", WorkerSpec(etl=etl, seed=config.seed + i), folder,
                                       config.timeout_s)
                costs = cost_metrics(result)
                per_run[variant].append(costs)
                rows.append({"variant": variant, "run": i, **costs})
                folders[variant] = folder
                progress.advance(task)
            rag, ft, uni = per_run["rag_only"][-1], per_run["ft_only"][-1], per_run["unified"][-1]
            separate = {k: rag[k] + ft[k] for k in SUMMED}
            separate["peak_rss_mb"] = max(rag["peak_rss_mb"], ft["peak_rss_mb"])
            separate["documents_failed"] = max(rag["documents_failed"], ft["documents_failed"])
            per_run["separate"].append(separate)
            rows.append({"variant": "separate", "run": i, **separate})
            ratios.append({k: separate[k] / uni[k] if uni[k] else float("nan") for k in RATIOS})
            agreements.append(agreement(folders["unified"], folders["rag_only"], folders["ft_only"]))

    metrics: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    for variant, runs in per_run.items():
        metrics[variant] = {k: _mean([r[k] for r in runs]) for k in runs[0]}
        spread[variant] = {k: _sd([r[k] for r in runs]) for k in runs[0]}
    metrics["ratio_separate_over_unified"] = {k: _mean([r[k] for r in ratios]) for k in RATIOS}
    metrics["agreement"] = {k: _mean([a[k] for a in agreements]) for k in agreements[0]}

    ctx.write_csv("per_run.csv", pd.DataFrame(rows))
    ctx.write_json("ratios_per_run.json", ratios)
    ctx.write_json("agreement_per_run.json", agreements)
    cost_columns = ["wall_seconds", "cpu_seconds", "model_requests", "tokens", "peak_rss_mb", "model_loads"]
    ctx.write_plot("plots/costs.png", lambda p: plot_metric_bars(
        {v: metrics[v] for v in (*VARIANTS, "separate")}, cost_columns, p, title="dual_pipeline: cost per variant",
        errors={v: spread[v] for v in (*VARIANTS, "separate")} if config.n_runs > 1 else None))
    for variant in (*VARIANTS, "separate"):
        params = {"stages": config.stages_of(variant) if variant != "separate" else config.rag_stages + config.ft_stages,
                  "documents": str(config.documents), "limit": config.limit, "temperature": config.temperature}
        ctx.log_variant(variant, metrics[variant], params=params,
                        extra_metrics={f"sd.{k}": v for k, v in spread[variant].items()})
    ctx.log_variant("ratio_separate_over_unified", metrics["ratio_separate_over_unified"])
    ctx.log_variant("agreement", metrics["agreement"])

    lines = ["# dual_pipeline", "",
             f"Documents: `{config.documents}` (limit {config.limit}), profile {config.profile}, temperature "
             f"{config.temperature}, {config.n_runs} run(s) per pipeline, each in its own process.", "",
             "## Cost per pipeline (mean over runs)", "",
             metrics_table({v: metrics[v] for v in (*VARIANTS, "separate")},
                           cost_columns + ["processing_seconds", "prefill_batches", "stage_calls"],
                           row_header="pipeline"),
             "## Separate / unified (mean of per-run ratios)", "",
             metrics_table({"separate / unified": metrics["ratio_separate_over_unified"]}, row_header=""),
             "## Do the outputs agree?", "", metrics_table({"unified vs separate": metrics["agreement"]}, row_header=""),
             "Per-run numbers: `per_run.csv`; ETL run folders: `etl_runs/`."]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return ExperimentResult(metrics=metrics)
