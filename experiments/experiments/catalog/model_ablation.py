"""model_ablation: change one config axis of the ETL's QA stages at a time and measure what it does.

Each variant is an ETL run (in its own process, ``experiments.etl_worker``) of the QA stages
(``stages``, default QA generation and the judge) on the same documents, with some of:

* ``etl``: any ``EtlConfig`` field (``max_chunk_tokens``, ``qa_per_chunk``, ``temperature`` ...);
* ``models``: a ``ModelSpec`` per model role (``qa``, ``validation``, ...), e.g. another model
  or other decoding settings (``min_p``, ``repetition_penalty``, ``max_new_tokens``);
* ``decoding``: ``constrained`` (JSON-schema grammar, the stack's default) or ``free`` (the same
  agent prompted for JSON, no grammar; ``experiments.free_decoding``).

**One common evaluation set** (``evaluation = "squad"``, the default): every variant runs on the
same seeded sample of SQuAD v2.0 paragraphs (``experiments.squad_eval``) and is judged with the
same human questions over the same corpus, whatever its chunking or model:

* ``d2q_ndcg@10``: document expansion (doc2query, Nogueira et al. 2019): each sampled paragraph
  gets the variant's valid generated questions appended, and the human questions are retrieved
  with ``retriever`` (default BM25) over every paragraph of the articles (one relevant document:
  the question's paragraph). A variant whose questions help people find the paragraph scores
  higher; the unexpanded corpus is reported as the reference ``no_expansion``;
* ``answer_coverage_f1``: per human question, the best token F1 between its answers and the
  variant's valid generated answers from the same paragraph (0 when there are none): how much of
  what people ask about the variant's pairs cover.

Both are per human question, so variants are compared with the ``baseline`` item by item, paired
(Wilcoxon signed-rank, ``correction`` over the family). The ETL's own verdicts (QA pairs, validity
rate, grounding rate, parse rates, first-try JSON rate under free decoding) are the pipeline's
yield, reported per variant as **descriptive** figures without tests: they come from the judge and
grounding check that made the split. Costs: wall and CPU time of the worker, tokens, model
requests, peak memory. With ``evaluation = "none"`` the variants run on ``documents`` and only the
yield and costs are reported (no retrieval over the variants' own chunks: that would compare
across corpora).

The default variants run on the offline model; the LFM2 size variants (350M, 700M, 1.2B, 2.6B)
run where the weights are available locally and are skipped with the reason otherwise. Means
are over ``n_runs`` runs with seeds ``seed``, ``seed + 1``, ...
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
                                              description="ModelSpec fields per model role ('qa', 'validation').")
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
    limit: int | None = Field(None, ge=1, description="Only the first N documents (sorted by path); None = all.")
    profile: str = Field("offline", description="Model profile for stages a variant does not override.")
    stages: list[str] = Field(default_factory=lambda: ["qa", "judge"], min_length=1,
                              description="ETL LLM stages each variant runs (the others use their fallbacks).")
    variants: list[AblationVariant] = Field(default_factory=default_variants, min_length=1,
                                            description="{name, etl = {EtlConfig fields}, models = {model role = "
                                            "{ModelSpec fields}}, decoding = constrained|free}.")
    baseline: str = Field("baseline", description="Variant the others are tested against; it must run.")
    evaluation: Literal["squad", "none"] = Field(
        "squad", description="'squad': every variant runs on the same sampled SQuAD paragraphs and is judged with "
        "their human questions (d2q_ndcg@10, answer_coverage_f1); 'none': run on `documents`, yield and cost only.")
    squad: Path | None = Field(None, description="SQuAD v2.0 JSON (default: $LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json).")
    paragraphs_per_article: int = Field(8, ge=1, description="Seeded sample of SQuAD paragraphs per article the "
                                        "variants run on (evaluation = 'squad').")
    retriever: Literal["bm25", "dense"] = Field(
        "bm25", description="Retriever of the human questions over the expanded paragraphs (d2q_ndcg@10).")
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-comparison correction over every (metric, variant) comparison.")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples for the CIs.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (after correction).")
    timeout_s: float | None = Field(None, gt=0, description="Per ETL run; None = no limit.")

    @model_validator(mode="after")
    def _check(self) -> ModelAblationConfig:
        from etl_pipeline import EtlConfig

        if self.evaluation == "squad" and "documents" in self.model_fields_set:
            raise ValueError("documents is not read with evaluation = 'squad' (the variants run on the sampled SQuAD "
                             "paragraphs); set evaluation = 'none' to run them on your documents")
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
    """The ``ModelSpec`` a variant uses for a model role: its fields over the profile's spec."""
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


def expanded_corpus(corpus: dict[str, str], pairs: list[dict[str, Any]]) -> dict[str, str]:
    """``corpus`` with each valid generated question appended to its paragraph (doc2query)."""
    questions: dict[str, list[str]] = {}
    for p in pairs:
        if p["valid"] and p["key"] in corpus:
            questions.setdefault(p["key"], []).append(p["question"])
    return {k: "\n".join([text, *questions.get(k, [])]) for k, text in corpus.items()}


def answer_coverage(human: dict[str, dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, float]:
    """Per human question: best token F1 of a valid generated answer of its paragraph (0 if none)."""
    from liquid_shared.metrics import token_f1

    answers: dict[str, list[str]] = {}
    for p in pairs:
        if p["valid"] and p["answer"].strip():
            answers.setdefault(p["key"], []).append(p["answer"])
    return {q: max((token_f1(a, h["answers"]) for a in answers.get(h["key"], [])), default=0.0)
            for q, h in human.items() if h["answers"]}


def _stage_rate(report: dict[str, Any], stage: str) -> float:
    s = report.get("stages", {}).get(stage, {})
    return s.get("llm", 0) / s["calls"] if s.get("calls") else float("nan")


def run_metrics(result: dict[str, Any], qa_rows: list[dict[str, Any]], stages: list[str]) -> dict[str, float]:
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


COMMON_METRICS = ("d2q_ndcg@10", "answer_coverage_f1")
"""Measured on the common evaluation set (per human question) and tested against the baseline."""


@register("model_ablation", ModelAblationConfig,
          "One ETL axis at a time (model spec, chunk size, decoding settings, constrained vs free decoding, QA per "
          "chunk), all judged on one common set (SQuAD paragraphs, human questions): doc2query nDCG@10, coverage "
          "of the human answers, the ETL's yield (descriptive), time, memory.")
def run(config: ModelAblationConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.etl_runs import EtlRunError, run_in_worker
    from experiments.etl_worker import WorkerSpec
    from experiments.plots import plot_metric_bars
    from experiments.significance import adjust_family, paired_table, tables_markdown
    from experiments.squad_eval import (
        article_corpus,
        human_questions,
        load_run_pairs,
        load_squad,
        retrieval_ndcg,
        sample_paragraphs,
        write_paragraph_inputs,
    )
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

    squad_eval = config.evaluation == "squad"
    if squad_eval:
        squad = load_squad(config.squad)
        paragraphs = sample_paragraphs(squad, config.paragraphs_per_article, config.seed)
        inputs = write_paragraph_inputs(paragraphs, ctx.output_dir / "squad_input")
        human = human_questions(paragraphs)
        queries = {q: (h["text"], h["key"]) for q, h in human.items()}
        corpus = article_corpus(squad)
        reference = retrieval_ndcg(corpus, queries, (config.retriever,))[config.retriever]
    else:
        inputs = config.documents

    per_run: dict[str, list[dict[str, float]]] = {v.name: [] for v in runnable}
    qa_items: dict[str, list[dict[str, Any]]] = {v.name: [] for v in runnable}
    # per human question, one score per run (averaged over the runs below)
    common: dict[str, dict[str, dict[str, list[float]]]] = {m: {v.name: {} for v in runnable} for m in COMMON_METRICS}
    rows = []
    with ctx.progress() as progress:
        task = progress.add_task("ETL variants", total=config.n_runs * len(runnable))
        for i in range(config.n_runs):
            for variant in runnable:
                if variant.name in skipped:  # failed in an earlier run
                    progress.advance(task)
                    continue
                etl = {"input_dir": str(inputs), "profile": config.profile, "limit": config.limit,
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
                values = run_metrics(result, qa_rows, config.stages)
                if squad_eval:
                    pairs = [p for p in load_run_pairs(folder) if p["key"] in paragraphs]
                    scores = {"d2q_ndcg@10": retrieval_ndcg(expanded_corpus(corpus, pairs), queries,
                                                            (config.retriever,))[config.retriever],
                              "answer_coverage_f1": answer_coverage(human, pairs)}
                    for metric, per_q in scores.items():
                        for q, score in per_q.items():
                            common[metric][variant.name].setdefault(q, []).append(score)
                        values[metric] = _mean(list(per_q.values()))
                    n_valid = sum(p["valid"] for p in pairs)
                    values["valid_per_paragraph"] = n_valid / len(paragraphs)
                per_run[variant.name].append(values)
                rows.append({"variant": variant.name, "run": i, **values})
                qa_items[variant.name].extend(qa_rows)
                progress.advance(task)

    for name in skipped:
        per_run.pop(name, None)
        qa_items.pop(name, None)
        for metric in common.values():
            metric.pop(name, None)
    metrics = {name: {k: _mean([r[k] for r in runs]) for k in runs[0]} for name, runs in per_run.items()}
    ctx.write_csv("per_run.csv", pd.DataFrame(rows))
    ctx.write_csv("per_qa_pair.csv", pd.DataFrame([{"variant": n, **r} for n, items in qa_items.items() for r in items]))

    frames = []
    if squad_eval:
        per_question = {metric: {name: {q: statistics.fmean(v) for q, v in by_q.items()} for name, by_q in systems.items()}
                        for metric, systems in common.items()}
        ctx.write_csv("per_human_question.csv", pd.DataFrame(
            [{"variant": name, "question_id": q, "question": human[q]["text"], "metric": metric, "score": score}
             for metric, systems in per_question.items() for name, by_q in systems.items() for q, score in by_q.items()]))
        if len(per_run) > 1:
            for metric, systems in per_question.items():
                frames.append(paired_table(systems, config.baseline, test="wilcoxon", correction=config.correction,
                                           n_boot=config.n_boot, seed=config.seed, alpha=config.alpha, metric=metric))
            adjust_family(frames, config.correction, config.alpha)
    if frames:
        ctx.write_csv("significance.csv", pd.concat(frames, ignore_index=True))
        ctx.write_text("tables/significance.tex", tables_markdown(frames, fmt="latex", caption_prefix="Ablation, "))
    common_shown = list(COMMON_METRICS) if squad_eval else []
    yield_metrics = ["qa_validity_rate", "grounding_rate", "qa_parse_rate"]
    cost = ["wall_seconds", "cpu_seconds", "peak_rss_mb", "output_tokens"]
    if common_shown:
        ctx.write_plot("plots/common_set.png", lambda p: plot_metric_bars(metrics, common_shown, p,
                                                                          title="model_ablation: common SQuAD set"))
    ctx.write_plot("plots/yield.png", lambda p: plot_metric_bars(metrics, yield_metrics, p,
                                                                 title="model_ablation: ETL yield (descriptive)"))
    ctx.write_plot("plots/cost.png", lambda p: plot_metric_bars(metrics, cost, p, title="model_ablation: cost"))
    by_name = {v.name: v for v in config.variants}
    for name, values in metrics.items():
        v = by_name[name]
        ctx.log_variant(name, values, params={"etl": v.etl, "models": v.models, "decoding": v.decoding,
                                              "stages": config.stages, "limit": config.limit,
                                              "evaluation": config.evaluation})
    lines = ["# model_ablation", ""]
    if squad_eval:
        ref = _mean(list(reference.values()))
        lines += [f"Every variant ran on the same {len(paragraphs)} sampled SQuAD paragraphs "
                  f"(`{config.paragraphs_per_article}` per article, seed {config.seed}), stages {config.stages}, "
                  f"profile {config.profile}, {config.n_runs} run(s) per variant. Common evaluation set: the "
                  f"{len(human)} answerable human questions of those paragraphs, retrieved with {config.retriever} "
                  f"over all {len(corpus)} paragraphs of the articles, each sampled paragraph expanded with the "
                  f"variant's valid questions (doc2query); no expansion: d2q_ndcg@10 = {ref:.4f}. "
                  "answer_coverage_f1: per human question, the best token F1 of a valid generated answer of its "
                  "paragraph. qa_validity_rate, grounding_rate and the parse rates are the ETL's own verdicts "
                  "(descriptive, not tested).", ""]
    else:
        lines += [f"Documents `{config.documents}` (limit {config.limit}), stages {config.stages}, profile "
                  f"{config.profile}, {config.n_runs} run(s) per variant. No common evaluation set "
                  "(evaluation = 'none'): yield (the ETL's own verdicts) and cost only.", ""]
    lines.append(metrics_table(metrics))
    if skipped:
        lines += ["## Skipped variants", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()] + [""]
    if frames:
        lines += [f"## Against `{config.baseline}` on the common set (paired Wilcoxon)", "", tables_markdown(frames)]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    notes = ["qa_validity_rate and grounding_rate are the ETL's own verdicts (descriptive)"]
    if squad_eval:
        notes.append(f"no expansion reference d2q_ndcg@10 = {_mean(list(reference.values())):.4f}")
        metrics_ref = {"no_expansion": {"d2q_ndcg@10": _mean(list(reference.values()))}}
        ctx.write_json("reference.json", metrics_ref)
    return ExperimentResult(metrics=metrics, skipped=skipped, notes=notes)
