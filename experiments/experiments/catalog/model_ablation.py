"""model_ablation: change one config axis of the ETL's QA stages at a time and measure what it does.

Each variant is an ETL run (in its own process, ``experiments.etl_worker``) of the QA stages
(``stages``, default QA generation and the judge) on the same documents, with some of:

* ``etl``: any ``EtlConfig`` field (``max_chunk_tokens``, ``qa_per_chunk``, ``temperature`` ...);
* ``models``: a ``ModelSpec`` per profile stage (``qa``, ``validation``, ...), e.g. another model
  or other decoding settings (``min_p``, ``repetition_penalty``, ``max_new_tokens``);
* ``decoding``: ``constrained`` (JSON-schema grammar, the stack's default) or ``free`` (the same
  agent prompted for JSON, no grammar; ``experiments.free_decoding``).

Per variant (means over ``n_runs`` runs with seeds ``seed``, ``seed + 1``, ...): QA pairs, QA
validity rate (valid / pairs), grounding rate (grounded / pairs), parse rate of the QA stage
(agent runs that returned a valid output / runs), the first-try JSON rate under free decoding,
retrieval quality of the generated questions over the variant's own chunks (``retriever``:
nDCG@10, Recall@5, MRR@10, each question's relevant document its source chunk), wall time and
CPU time of the worker process, tokens, model requests, peak memory. Validity, grounding and
nDCG@10 are compared item by item with the ``baseline`` variant (Mann-Whitney U, Holm over the
family).

The default variants run on the offline model; the LFM2 size variants (350M, 700M, 1.2B, 2.6B)
run where the weights are available locally and are skipped with the reason otherwise.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from experiments.base import ExperimentResult, RunContext
from experiments.documents import DocumentsConfig
from experiments.registry import register

LFM2_SIZES = {"lfm2_350m": "LiquidAI/LFM2-350M", "lfm2_700m": "LiquidAI/LFM2-700M",
              "lfm2_1.2b": "LiquidAI/LFM2-1.2B", "lfm2_2.6b": "LiquidAI/LFM2-2.6B"}


class AblationVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="Name in the tables (letters, digits, _ . -).")
    etl: dict[str, Any] = Field(default_factory=dict, description="EtlConfig fields that differ from the defaults.")
    models: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="ModelSpec fields per profile stage ('qa', 'validation').")
    decoding: Literal["constrained", "free"] = Field(
        "constrained", description="JSON-schema grammar (the default) or free decoding, JSON asked for by prompt only.")


def default_variants() -> list[AblationVariant]:
    """The baseline is the ETL's defaults (greedy decoding, 160-token chunks, 2 QA pairs per chunk,
    grammar-constrained output); every other variant changes one of them."""
    variants = [
        AblationVariant(name="baseline"),
        AblationVariant(name="free_decoding", decoding="free"),
        # sampling at LFM2's recommended temperature (with the spec's min_p and repetition penalty)
        AblationVariant(name="temperature_0.3", etl={"temperature": 0.3}),
        AblationVariant(name="qa_per_chunk_1", etl={"qa_per_chunk": 1}),
        # smaller than most sections of the sample documents, so the chunks really change
        AblationVariant(name="chunk_64_tokens", etl={"max_chunk_tokens": 64}),
    ]
    for name, model in LFM2_SIZES.items():
        variants.append(AblationVariant(name=name, models={"qa": {"model": model}, "validation": {"model": model}}))
    return variants


class ModelAblationConfig(DocumentsConfig):
    limit: int | None = Field(3, ge=1, description="Only the first N documents (sorted by path); None = all.")
    profile: str = Field("offline", description="Model profile for stages a variant does not override.")
    stages: list[str] = Field(default_factory=lambda: ["qa", "judge"], min_length=1,
                              description="ETL LLM stages each variant runs (the others use their fallbacks).")
    variants: list[AblationVariant] = Field(default_factory=default_variants, min_length=1,
                                            description="{name, etl = {EtlConfig fields}, models = {profile stage = "
                                            "{ModelSpec fields}}, decoding = constrained|free}.")
    baseline: str = Field("baseline", description="Variant the others are tested against; it must run.")
    retriever: Literal["bm25", "dense", "hybrid_rrf"] = Field(
        "dense", description="Retriever of the generated questions over the variant's own chunks.")
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-comparison correction over every (metric, variant) comparison.")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples for the CIs.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (after correction).")
    timeout_s: float | None = Field(None, gt=0, description="Per ETL run; None = no limit.")

    @model_validator(mode="after")
    def _check(self) -> ModelAblationConfig:
        from etl_pipeline import EtlConfig

        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the variants {names}")
        for v in self.variants:
            unknown = sorted(set(v.etl) - set(EtlConfig.model_fields))
            if unknown:
                raise ValueError(f"variant {v.name!r}: unknown ETL setting(s) {unknown}")
            for stage in v.models:
                try:
                    stage_spec(self.profile, v, stage)
                except (KeyError, ValueError) as exc:
                    raise ValueError(f"variant {v.name!r}, models.{stage}: {exc}") from None
        return self


def stage_spec(profile: str, variant: AblationVariant, stage: str):
    """The ``ModelSpec`` a variant uses for a profile stage: its fields over the profile's spec."""
    from liquid_shared.models import ModelSpec, get_profile

    base = get_profile(profile).spec_for(stage)
    return ModelSpec(**{**base.model_dump(), **variant.models.get(stage, {})})


def model_unavailable(profile: str, variant: AblationVariant) -> str | None:
    """Why a variant's models cannot be loaded here (not cached and no network), or None."""
    from liquid_shared import ModelLoadError, resolve_source

    for stage in variant.models:
        spec = stage_spec(profile, variant, stage)
        try:
            resolve_source(spec)
        except ModelLoadError as exc:
            return f"models.{stage} = {spec.model!r} is not available here: {str(exc).split('. Fix')[0]}"
    return None


def _retriever_spec(name: str):
    from experiments.retrieval_variants import VariantSpec

    if name == "hybrid_rrf":
        return VariantSpec(name=name, retriever="hybrid", fusion="rrf")
    return VariantSpec(name=name, retriever=name)


def qa_outcomes(run_dir: Path) -> list[dict[str, Any]]:
    """One row per QA pair of a run: valid, grounded, grounding score."""
    from liquid_shared.schemas import QAPair, ValidationResult, read_jsonl

    verdict = {v.qa_id: v for v in read_jsonl(run_dir / "validation.jsonl", ValidationResult)}
    rows = []
    for pair in read_jsonl(run_dir / "qa_pairs.jsonl", QAPair):
        v = verdict.get(pair.qa_id)
        rows.append({"qa_id": pair.qa_id, "valid": float(bool(v and v.valid)),
                     "grounded": float(bool(v and v.grounded)), "grounding_score": v.grounding_score if v else 0.0})
    return rows


def question_retrieval(run_dir: Path, retriever: str) -> dict[str, dict[str, float]]:
    """Per-question nDCG@10, Recall@5, MRR@10 of the run's questions over its own chunks."""
    from experiments.eval_data import DatasetError, load_etl_dataset
    from experiments.retrieval_variants import run_variants
    from liquid_shared.metrics import evaluate
    from rag_runtime import RagIndex

    try:
        data = load_etl_dataset(run_dir)
    except DatasetError:
        return {}
    spec = _retriever_spec(retriever)
    index = RagIndex.build(data.docs, with_dense=spec.retriever != "bm25")
    ranked = run_variants(index, data.queries, [spec], k=10, candidates=100, boost_factor=1.0)
    result = evaluate(ranked.runs[spec.name], data.qrels, ["ndcg@10", "recall@5", "mrr@10"])
    return {q: {m: result.per_query[m][q] for m in result.per_query} for q in result.query_ids}


def _stage_rate(report: dict[str, Any], stage: str) -> float:
    s = report.get("stages", {}).get(stage, {})
    return s.get("llm", 0) / s["calls"] if s.get("calls") else float("nan")


def run_metrics(result: dict[str, Any], qa_rows: list[dict[str, Any]], retrieval: dict[str, dict[str, float]],
                stages: list[str]) -> dict[str, float]:
    from experiments.etl_runs import cost_metrics

    report = result.get("report") or {}
    counts = report.get("counts", {})
    n = len(qa_rows)
    costs = cost_metrics(result)
    out = {
        "qa_pairs": float(n),
        "qa_per_chunk_made": n / counts["chunks"] if counts.get("chunks") else float("nan"),
        "qa_validity_rate": sum(r["valid"] for r in qa_rows) / n if n else float("nan"),
        "grounding_rate": sum(r["grounded"] for r in qa_rows) / n if n else float("nan"),
        "qa_parse_rate": _stage_rate(report, "qa"),
        "ndcg@10": statistics.fmean(r["ndcg@10"] for r in retrieval.values()) if retrieval else float("nan"),
        "recall@5": statistics.fmean(r["recall@5"] for r in retrieval.values()) if retrieval else float("nan"),
        "mrr@10": statistics.fmean(r["mrr@10"] for r in retrieval.values()) if retrieval else float("nan"),
        "wall_seconds": costs["wall_seconds"],
        "cpu_seconds": costs["cpu_seconds"],
        "processing_seconds": costs["processing_seconds"],
        "output_tokens": costs["output_tokens"],
        "model_requests": costs["model_requests"],
        "peak_rss_mb": costs["peak_rss_mb"],
    }
    if "judge" in stages:
        out["judge_parse_rate"] = _stage_rate(report, "judge")
    free = result.get("free_decoding") or {}
    if free:
        replies = sum(v["replies"] for v in free.values())
        out["first_try_json_rate"] = sum(v["json_objects"] for v in free.values()) / replies if replies else float("nan")
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.fmean(finite) if finite else float("nan")


@register("model_ablation", ModelAblationConfig,
          "One ETL axis at a time (model spec, chunk size, decoding settings, constrained vs free decoding, QA per "
          "chunk): QA validity, grounding, parse rate, retrieval with the generated questions, time, memory.")
def run(config: ModelAblationConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.etl_runs import EtlRunError, run_in_worker
    from experiments.etl_worker import WorkerSpec
    from experiments.plots import plot_metric_bars
    from experiments.significance import adjust_family, independent_table, tables_markdown
    from experiments.tables import metrics_table

    skipped: dict[str, str] = {}
    runnable = []
    for variant in config.variants:
        reason = model_unavailable(config.profile, variant)
        if reason:
            skipped[variant.name] = reason
        else:
            runnable.append(variant)
    if config.baseline in skipped:
        raise RuntimeError(f"the baseline variant {config.baseline!r} cannot run: {skipped[config.baseline]}")

    per_run: dict[str, list[dict[str, float]]] = {v.name: [] for v in runnable}
    qa_items: dict[str, list[dict[str, Any]]] = {v.name: [] for v in runnable}
    query_items: dict[str, list[float]] = {v.name: [] for v in runnable}
    rows = []
    with ctx.progress() as progress:
        task = progress.add_task("ETL variants", total=config.n_runs * len(runnable))
        for i in range(config.n_runs):
            for variant in runnable:
                if variant.name in skipped:  # failed in an earlier run
                    progress.advance(task)
                    continue
                etl = {"input_dir": str(config.documents), "profile": config.profile, "limit": config.limit,
                       "stages": config.stages, **variant.etl}
                spec = WorkerSpec(etl=etl, models=variant.models, decoding=variant.decoding, seed=config.seed + i)
                folder = ctx.path(f"etl_runs/run{i}/{variant.name}")
                try:
                    result = run_in_worker(f"{variant.name} (run {i + 1})", spec, folder, config.timeout_s)
                except EtlRunError as exc:
                    if variant.name == config.baseline:
                        raise
                    skipped[variant.name] = f"failed: {exc}"  # the other variants still count
                    progress.advance(task)
                    continue
                qa_rows = qa_outcomes(folder)
                retrieval = question_retrieval(folder, config.retriever)
                values = run_metrics(result, qa_rows, retrieval, config.stages)
                per_run[variant.name].append(values)
                rows.append({"variant": variant.name, "run": i, **values})
                qa_items[variant.name].extend(qa_rows)
                query_items[variant.name].extend(r["ndcg@10"] for r in retrieval.values())
                progress.advance(task)

    for name in skipped:
        per_run.pop(name, None)
        qa_items.pop(name, None)
        query_items.pop(name, None)
    metrics = {name: {k: _mean([r[k] for r in runs]) for k in runs[0]} for name, runs in per_run.items()}
    ctx.write_csv("per_run.csv", pd.DataFrame(rows))
    ctx.write_csv("per_qa_pair.csv", pd.DataFrame([{"variant": n, **r} for n, items in qa_items.items() for r in items]))

    frames = []
    if len(per_run) > 1:
        for metric, samples in (("valid", {n: [r["valid"] for r in qa_items[n]] for n in qa_items}),
                                ("grounded", {n: [r["grounded"] for r in qa_items[n]] for n in qa_items}),
                                ("ndcg@10", query_items)):
            if len(samples.get(config.baseline, [])) >= 2:
                frames.append(independent_table(samples, config.baseline, correction=config.correction,
                                                n_boot=config.n_boot, seed=config.seed, alpha=config.alpha,
                                                metric=metric))
        adjust_family(frames, config.correction, config.alpha)
    if frames:
        ctx.write_csv("significance.csv", pd.concat(frames, ignore_index=True))
        ctx.write_text("tables/significance.tex", tables_markdown(frames, fmt="latex", caption_prefix="Ablation, "))
    quality = ["qa_validity_rate", "grounding_rate", "qa_parse_rate", "ndcg@10"]
    cost = ["wall_seconds", "cpu_seconds", "peak_rss_mb", "output_tokens"]
    ctx.write_plot("plots/quality.png", lambda p: plot_metric_bars(metrics, quality, p, title="model_ablation: quality"))
    ctx.write_plot("plots/cost.png", lambda p: plot_metric_bars(metrics, cost, p, title="model_ablation: cost"))
    by_name = {v.name: v for v in config.variants}
    for name, values in metrics.items():
        v = by_name[name]
        ctx.log_variant(name, values, params={"etl": v.etl, "models": v.models, "decoding": v.decoding,
                                              "stages": config.stages, "limit": config.limit})
    lines = ["# model_ablation", "",
             f"Documents `{config.documents}` (limit {config.limit}), stages {config.stages}, profile "
             f"{config.profile}, {config.n_runs} run(s) per variant; retrieval of the generated questions with "
             f"{config.retriever}.", "", metrics_table(metrics)]
    if skipped:
        lines += ["## Skipped variants", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()] + [""]
    if frames:
        lines += [f"## Against `{config.baseline}`", "", tables_markdown(frames)]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return ExperimentResult(metrics=metrics, skipped=skipped)
