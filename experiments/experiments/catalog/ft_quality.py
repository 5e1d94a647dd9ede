"""ft_quality: how good is a fine-tuning set, and is one set better than another?

Per set (see ``ft_sets`` for what a set can be):

* **schema validity**: share of records in the stack's chat format (``ft_sets``);
* **grounding**: share of the answer's content words found in its context (the ETL's own
  grounding score, ``etl_pipeline.grounding_score``), its mean and the share at or above
  ``grounding_threshold``;
* **diversity**: distinct-1 and distinct-2 of the questions (distinct n-grams over all n-grams,
  Li et al. 2016) and the near-duplicate rate (questions whose embedding cosine to an earlier
  question of the set is at least ``near_duplicate_threshold``, or whose text repeats one);
* **answerability**: a reader model answers each question from its context; exact match and
  token F1 against the set's answer (SQuAD definitions).

Schema validity, grounding and near-duplicates are the ETL's own filters: a validated set passes
them by construction, so they are reported as **descriptive** figures and never tested for
significance. Only answerability is compared: two or more sets item by item with a Mann-Whitney
U test against the first set (``independent_table``), p-values corrected over every (metric, set)
comparison together. When the reader is a model that generated or judged the pairs (read from the
ETL run's ``report.json``; the offline default is), answerability is **self-graded** and every
output says so (``reader_is_generator`` in the metrics, a line in the report); configure another
``reader_model`` for an independent reader. Default sets from an ETL run: ``validated`` (its
``ft/samples.jsonl``) against ``rejected`` (the QA pairs its validation turned down); the two are
disjoint, so the samples are independent.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rich.markup import escape

from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register

# the ETL's own filters (descriptive only) and the measures compared across sets
DESCRIPTIVE_METRICS = ("schema_valid", "grounding", "grounded", "near_duplicate")
TESTED_METRICS = ("answer_em", "answer_f1")


class FtSetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="Name in the tables (letters, digits, _ . -).")
    path: Path | None = Field(None, description="ETL run folder or JSONL file; None = the experiment's dataset.")
    select: Literal["ft", "valid", "invalid", "all"] = Field(
        "ft", description="ETL run folders: ft/samples.jsonl ('ft') or QA pairs by validation verdict.")


DEFAULT_SETS = [FtSetSpec(name="validated", select="ft"), FtSetSpec(name="rejected", select="invalid")]


class FtQualityConfig(ExperimentConfig):
    dataset: Path | None = Field(None, description="ETL run folder or fine-tuning JSONL file of the sets without a "
                                 "path (--dataset); None = the default ETL run, made first if missing.")
    sets: list[FtSetSpec] = Field(default_factory=lambda: [s.model_copy() for s in DEFAULT_SETS], min_length=1,
                                  description="{name, path, select = ft|valid|invalid|all}; the first set is the "
                                  "one the others are compared with.")
    grounding_threshold: float = Field(0.6, ge=0, le=1, description="Least grounding score of a grounded answer.")
    near_duplicate_threshold: float = Field(0.92, gt=0, le=1, description="Question embedding cosine at which a "
                                            "question nearly repeats an earlier one.")
    reader_model: str | None = Field(None, description="Reader model id/path (default: the profile's 'answer' model).")
    max_reader_items: int | None = Field(200, ge=1, description="Reader answers at most this many items per set "
                                                                "(a seeded random subset); None = all.")
    reader_concurrency: int = Field(8, ge=1, le=64, description="Reader questions in flight (the batch size).")
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-comparison correction over every (metric, set) comparison.")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples for the CIs.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (after correction).")
    default_etl: dict[str, Any] = Field(default_factory=dict, description="EtlConfig settings for making the "
                                        "default ETL run when it is missing (e.g. {limit = 2}).")

    @field_validator("dataset")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).expanduser().exists():
            raise ValueError(f"dataset path {value} does not exist (give an ETL run folder or a fine-tuning JSONL file)")
        return None if value is None else Path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _unique(self) -> FtQualityConfig:
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"set names must be unique, got {names}")
        for spec in self.sets:
            if spec.path is not None and not Path(spec.path).expanduser().exists():
                raise ValueError(f"set {spec.name!r}: path {spec.path} does not exist")
        return self


_WORD = re.compile(r"\w+")


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (lower-cased word tokens); NaN without n-grams."""
    grams = [tuple(toks[i:i + n]) for toks in (_WORD.findall(t.lower()) for t in texts) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def near_duplicates(questions: list[str], threshold: float) -> list[bool]:
    """``True`` for each question that nearly repeats an earlier one of the same set."""
    if not questions:
        return []
    from etl_pipeline import near_duplicate_mask
    from liquid_shared.embeddings import get_embedder

    vectors = get_embedder().encode(questions)
    return [not keep for keep in near_duplicate_mask(questions, vectors, threshold)]


def generator_models(path: Path | None) -> set[str] | None:
    """Models that wrote or judged an ETL run's pairs (its ``report.json``: the qa and validation
    stages); None when the set is not an ETL run or the report does not say."""
    import json

    if path is None or not (Path(path) / "report.json").is_file():
        return None
    try:
        models = json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))["run"]["settings"]["models"]
    except (KeyError, TypeError, ValueError):
        return None
    names = {v["spec"]["model"] for stage, v in models.items() if stage in ("qa", "validation")}
    return names or None


def _reader_model(name: str | None):
    from liquid_shared.models import LiquidModel, ModelSpec, default_model

    return default_model() if name is None else LiquidModel(ModelSpec(model=name))


@register("ft_quality", FtQualityConfig,
          "Quality of fine-tuning sets: schema validity, grounding, diversity (distinct-n, near-duplicates; "
          "descriptive, the ETL's own filters), and answerability by a reader model (EM/F1, flagged when the "
          "reader wrote the pairs) compared across sets (Mann-Whitney, Holm).")
def run(config: FtQualityConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from etl_pipeline import grounding_score
    from experiments.eval_data import ensure_default_etl_run
    from experiments.ft_sets import load_ft_set
    from experiments.reader import score_answers
    from experiments.significance import adjust_family, independent_table, tables_markdown
    from experiments.tables import metrics_table
    from liquid_shared.reporting import plot_per_query

    default_path = config.dataset
    if default_path is None and any(s.path is None for s in config.sets):
        default_path = ensure_default_etl_run(ctx.console, config.default_etl)
    reader = _reader_model(config.reader_model)
    loaded: dict[str, tuple[list, list[float], list[bool], list[int]]] = {}
    skipped: dict[str, str] = {}
    self_graded: dict[str, float] = {}
    t0 = time.perf_counter()
    for spec in config.sets:
        path = spec.path or default_path
        items = load_ft_set(path, spec.select)
        if not items:
            skipped[spec.name] = f"no items in {path} (select={spec.select!r})"
            ctx.console.print(f"[yellow]set {spec.name}: {escape(skipped[spec.name])}[/yellow]")
            continue
        grounding = [grounding_score(it.answer, it.context) if it.context else 0.0 for it in items]
        dup = near_duplicates([it.question for it in items], config.near_duplicate_threshold)
        readable = [i for i, it in enumerate(items) if it.schema_valid and it.context and it.question]
        if config.max_reader_items is not None and len(readable) > config.max_reader_items:
            readable = sorted(random.Random(config.seed).sample(readable, config.max_reader_items))
        loaded[spec.name] = (items, grounding, dup, readable)
        writers = generator_models(path)
        self_graded[spec.name] = float("nan") if writers is None else float(reader.spec.model in writers)
        ctx.console.print(f"set {spec.name}: {len(items)} items, {len(readable)} for the reader")
    timings = {"load_and_score": time.perf_counter() - t0}

    # one reader pass over every set, so the model sees full batches
    queue = [(name, i) for name, (_, _, _, readable) in loaded.items() for i in readable]
    t0 = time.perf_counter()
    with ctx.progress() as progress:
        task = progress.add_task("reader", total=len(queue))
        answers = score_answers([(loaded[n][0][i].context, loaded[n][0][i].question, loaded[n][0][i].answer)
                                 for n, i in queue], reader, concurrency=config.reader_concurrency,
                                on_done=lambda: progress.advance(task))
    timings["reader"] = time.perf_counter() - t0
    by_item = dict(zip(queue, answers, strict=True))

    metrics: dict[str, dict[str, float]] = {}
    rows = []
    for name, (items, grounding, dup, readable) in loaded.items():
        scores = [by_item[name, i] for i in readable]
        for i, it in enumerate(items):
            score = by_item.get((name, i))
            rows.append({"set": name, "item_id": it.item_id, "schema_valid": float(it.schema_valid),
                         "grounding": grounding[i], "grounded": float(grounding[i] >= config.grounding_threshold),
                         "near_duplicate": float(dup[i]),
                         "answer_em": None if score is None else score.exact_match,
                         "answer_f1": None if score is None else score.f1,
                         "reader_answer": None if score is None else score.prediction,
                         "reader_error": None if score is None else score.error,
                         "problems": "; ".join(it.problems), "question": it.question, "answer": it.answer})
        em = [s.exact_match for s in scores]
        f1 = [s.f1 for s in scores]
        questions = [it.question for it in items]
        metrics[name] = {
            "n_items": float(len(items)),
            "schema_validity": sum(it.schema_valid for it in items) / len(items),
            "grounding_mean": sum(grounding) / len(items),
            "grounding_rate": sum(g >= config.grounding_threshold for g in grounding) / len(items),
            "distinct_1": distinct_n(questions, 1),
            "distinct_2": distinct_n(questions, 2),
            "near_duplicate_rate": sum(dup) / len(items),
            "answer_em": sum(em) / len(em) if em else float("nan"),
            "answer_f1": sum(f1) / len(f1) if f1 else float("nan"),
            "reader_items": float(len(scores)),
            "reader_is_generator": self_graded[name],
        }

    if not metrics:
        raise RuntimeError("no fine-tuning set had any item: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    per_item = pd.DataFrame(rows)
    ctx.write_csv("per_item.csv", per_item)

    frames = []
    names = list(metrics)
    if len(names) > 1:
        for metric in TESTED_METRICS:
            samples = {n: per_item.loc[per_item["set"] == n, metric].dropna().astype(float).tolist() for n in names}
            if len(samples[names[0]]) < 2:
                continue
            frames.append(independent_table(samples, names[0], correction=config.correction, n_boot=config.n_boot,
                                            seed=config.seed, alpha=config.alpha, metric=metric))
        adjust_family(frames, config.correction, config.alpha)
    if frames:
        ctx.write_csv("significance.csv", pd.concat(frames, ignore_index=True))
        ctx.write_text("tables/significance.tex", tables_markdown(frames, fmt="latex", caption_prefix="Fine-tuning sets, "))
    for metric in ("answer_f1",):
        values = {n: per_item.loc[per_item["set"] == n, metric].dropna().astype(float).tolist() for n in names}
        values = {n: v for n, v in values.items() if v}
        if values:
            ctx.write_plot(f"plots/{metric}.png", lambda p, v=values, m=metric: plot_per_query(
                v, p, metric=m, title=f"Per-item {m} by set"))
    ctx.write_json("timings.json", timings)
    for name, values in metrics.items():
        spec = next(s for s in config.sets if s.name == name)
        ctx.log_variant(name, values, params={"path": str(spec.path or default_path), "select": spec.select})
    graded = {n: v for n, v in self_graded.items() if n in metrics}
    if any(v == 1.0 for v in graded.values()):
        reader_line = (f"**Answerability is self-graded**: the reader `{reader.spec.model}` also wrote or judged the "
                       f"pairs of {', '.join(f'`{n}`' for n, v in graded.items() if v == 1.0)} (the ETL run's report.json); "
                       "set `reader_model` to another model for an independent reader.")
    elif all(v == 0.0 for v in graded.values()):
        reader_line = f"Answerability by `{reader.spec.model}`, a model that neither wrote nor judged the pairs."
    else:
        reader_line = (f"Answerability by `{reader.spec.model}`; for sets that are not ETL runs it is unknown whether "
                       "that model wrote them.")
    lines = ["# ft_quality", "",
             "Schema validity, grounding and near-duplicate rate are the ETL's own filters (validated pairs pass "
             "them by construction): descriptive only, not tested. " + reader_line, "",
             metrics_table(metrics, row_header="set")]
    if skipped:
        lines += ["## Skipped sets", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()] + [""]
    if frames:
        lines += [f"## Against `{names[0]}` (p-values {config.correction}-corrected over all "
                  f"{sum(int((~f['is_baseline']).sum()) for f in frames)} comparisons)", "", tables_markdown(frames)]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return ExperimentResult(metrics=metrics, skipped=skipped)
