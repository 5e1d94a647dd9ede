"""rag_answers: are the answers right? Answer styles and no-LLM baselines on SQuAD v2.0's human questions.

The paragraphs of a SQuAD v2.0 file are split by paragraph into two seeded halves
(``answer_data.split_by_paragraph``). On the **dev** half, with its own index and no LLM call,
``answer_fit.fit_settings`` fits the hybrid fusion weight, the sentence-selection weight and the
two refusal bars (``min_similarity``, ``min_answer_score``). On the **report** half, with its own
index (its paragraphs are the corpus), every variant (``answer_runs.AnswerVariant``) answers
every question (or a seeded subsample, ``max_questions``) and is scored
(``answer_metrics``): SQuAD v2.0's official EM/F1 (overall, HasAns, NoAns), answer accuracy,
citation accuracy, retrieval recall of the question's paragraph, refusal precision/recall/F1, the
support check's precision/recall as a predictor of a right answer, seconds and tokens per answer.

Every variant is compared with the ``baseline`` (default: the top sentence by MiniLM, no LLM) by a
paired test per question on answer accuracy (answerable questions), overall accuracy (every
question: right answer, or refusal of an unanswerable one) and official F1, Holm-corrected over
the whole family, with bootstrap CIs.

Files: ``per_question.csv``, ``significance.csv``, ``settings.json`` (what was fitted, and the dev
scores behind it), ``split.json`` (the paragraphs of each half), ``report.md``, ``plots/``,
``timings.json``. Answers are cached per question under ``cache_dir`` so a killed run resumes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from experiments.answer_runs import DEFAULT_ANSWER_VARIANTS, AnswerVariant
from experiments.base import ExperimentConfig, ExperimentResult, RunContext
from experiments.registry import register

GOALS = {"answer_accuracy": 0.70, "citation_accuracy": 0.85, "refusal_f1": 0.50}
TESTED_METRICS = ("correct", "overall", "f1")


class RagAnswersConfig(ExperimentConfig):
    dataset: Path | None = Field(None, description="SQuAD v2.0 JSON file (--dataset; default: "
                                 "$LIQUID_DATA_DIR/squad/dev-v2.0-3articles.json).")
    variants: list[AnswerVariant] = Field(default_factory=lambda: [v.model_copy() for v in DEFAULT_ANSWER_VARIANTS],
                                          min_length=1, description="Answer variants: {name, style, mode, selection, "
                                          "ranking, answer_bar, check_question, oracle}.")
    baseline: str = Field("sentence_embedding", description="Variant every other one is tested against.")
    dev_share: float = Field(0.5, gt=0, lt=1, description="Share of the paragraphs (seeded) the settings are fitted on.")
    max_questions: int | None = Field(None, ge=2, description="Answer a seeded subsample of the report half's "
                                      "questions (half answerable, half not, where possible); None = all.")
    max_llm_questions: int | None = Field(None, ge=2, description="LLM variants answer only a seeded subsample "
                                          "of that many of the questions (half answerable where possible); the no-LLM "
                                          "ones answer all. Tests and the common table use the questions every variant "
                                          "answered. None = all.")
    k: int = Field(4, ge=1, le=20, description="Chunks retrieved per question.")
    max_chars_per_chunk: int = Field(700, ge=50, description="Characters of each chunk shown to the reader.")
    concurrency: int = Field(8, ge=1, le=64, description="LLM questions in flight at once (micro-batched).")
    embedding_model: str | None = Field(None, description="Dense encoder (default: all-MiniLM-L6-v2, offline).")
    llm: str | None = Field(None, description="Model profile for the answer role (default: the offline profile).")
    cache_dir: Path | None = Field(None, description="Per-question answer cache (default: <output-dir>/cache/rag_answers).")
    test: Literal["paired_t", "wilcoxon", "permutation"] = Field("paired_t", description="Paired test per question.")
    correction: Literal["holm", "bh", "none"] = Field("holm", description="Correction over every (metric, variant) test.")
    n_boot: int = Field(10_000, ge=100, description="Bootstrap resamples for the CIs.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the bootstrap CIs.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (after correction).")

    @field_validator("dataset")
    @classmethod
    def _is_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = Path(value).expanduser()
        if not value.is_file():
            raise ValueError(f"dataset {value} is not a file (give a SQuAD v2.0 JSON file)")
        return value.resolve()

    @model_validator(mode="after")
    def _consistent(self) -> RagAnswersConfig:
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {duplicates}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the variants {names}")
        for v in self.variants:
            if v.mode == "tool" and (v.style != "generative" or v.oracle):
                raise ValueError(f"variant {v.name!r}: mode 'tool' is for the generative style with real retrieval")
            if v.selection == "top" and v.style != "extractive":
                raise ValueError(f"variant {v.name!r}: selection 'top' needs style 'extractive'")
        return self


def fit_stage(config: RagAnswersConfig):
    """Load, split, fit on dev: ``(data, dev, report, settings)``. No LLM; sees only the dev half."""
    from experiments.answer_data import load_answer_set, split_by_paragraph
    from experiments.answer_fit import fit_settings

    data = load_answer_set(config.dataset)
    dev, report = split_by_paragraph(data, config.seed, config.dev_share)
    settings = fit_settings(dev, k=config.k, max_chars=config.max_chars_per_chunk,
                            embedding_model=config.embedding_model)
    return data, dev, report, settings


@register("rag_answers", RagAnswersConfig,
          "Answer quality on SQuAD v2.0 human questions: answer styles and modes (generative context/tool, "
          "extractive, oracle retrieval) against no-LLM sentence baselines (MiniLM, BM25); official EM/F1 "
          "(HasAns/NoAns), answer and citation accuracy, retrieval recall, refusal P/R/F1, the support check as a "
          "predictor; settings fitted on a dev half of the paragraphs; paired tests (Holm), bootstrap CIs.")
def run(config: RagAnswersConfig, ctx: RunContext) -> ExperimentResult:
    import pandas as pd

    from experiments.answer_data import subsample
    from experiments.answer_fit import build_answer_index
    from experiments.answer_runs import run_variant
    from experiments.answer_scoring import score_records, summarise, tested_scores
    from experiments.significance import adjust_family, paired_table, tables_markdown

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data, dev, report, settings = fit_stage(config)
    timings["fit_on_dev"] = time.perf_counter() - t0
    questions = subsample(report.questions, config.max_questions, config.seed)
    llm_questions = subsample(questions, config.max_llm_questions, config.seed + 1)
    described = {"file": data.describe(), "dev": dev.describe(), "report": report.describe(),
                 "report_questions_answered": len(questions),
                 "report_answerable_answered": sum(q.answerable for q in questions.values()),
                 "llm_questions": len(llm_questions),
                 "llm_answerable": sum(q.answerable for q in llm_questions.values()),
                 "subsampled": config.max_questions is not None and len(questions) < len(report.questions)}
    ctx.write_json("split.json", {"seed": config.seed, "dev_paragraphs": sorted(dev.paragraphs),
                                  "report_paragraphs": sorted(report.paragraphs), "questions": described})
    ctx.write_json("settings.json", settings.as_dict())
    ctx.run.log_params({f"fitted.{k}": v for k, v in settings.as_dict().items() if k != "dev"})
    ctx.console.print(f"rag_answers: fitted on {len(dev.paragraphs)} dev paragraphs: dense_weight "
                      f"{settings.dense_weight}, selection_weight {settings.selection_weight}, min_similarity "
                      f"{settings.min_similarity}, min_answer_score {settings.min_answer_score}; answering "
                      f"{len(questions)} report questions")

    t0 = time.perf_counter()
    index = build_answer_index(report, config.embedding_model)
    encoder = index.dense.encoder  # a MemoEncoder (build_answer_index)
    encoder.warm(report, questions.values(), config.max_chars_per_chunk)  # one batch, not one call per question
    retrieved = {q.id: [h.id for h in hs] for q, hs in zip(
        questions.values(), index.retriever("hybrid", dense_weight=settings.dense_weight).search_many(
            [q.text for q in questions.values()], config.k), strict=True)}
    timings["report_index"] = time.perf_counter() - t0
    model = None
    if any(v.uses_llm for v in config.variants):
        from liquid_shared.models import model_for_role

        model = model_for_role("answer", config.llm)
    cache_folder = config.cache_dir or ctx.output_dir.parent / "cache" / "rag_answers"
    data_key = f"{data.name}:{len(data.questions)}:{config.seed}:{config.dev_share}:{config.k}:{config.llm}"
    fitted = {k: v for k, v in settings.as_dict().items() if k != "dev"}
    records, seconds = {}, {}
    with ctx.progress() as progress:
        for variant in config.variants:
            asked = llm_questions if variant.uses_llm else questions
            task = progress.add_task(variant.name, total=len(asked))
            records[variant.name], seconds[variant.name] = run_variant(
                variant, asked, index=index, encoder=encoder, model=model, settings=fitted, k=config.k,
                max_chars=config.max_chars_per_chunk, cache_folder=Path(cache_folder), data_key=data_key,
                concurrency=config.concurrency, on_done=lambda t=task: progress.update(t, advance=1))
    timings.update({f"answer.{n}": s for n, s in seconds.items()})

    rows = []
    for variant in config.variants:
        asked = llm_questions if variant.uses_llm else questions
        rows += score_records(variant, asked, records[variant.name], retrieved)
    per_question = pd.DataFrame(rows)
    ctx.write_csv("per_question.csv", per_question)
    common = set(llm_questions) if any(v.uses_llm for v in config.variants) else set(questions)
    on_common = per_question[per_question["question_id"].isin(common)]
    metrics = {v.name: summarise(on_common[on_common["variant"] == v.name], v) for v in config.variants}
    full_half = {} if common == set(questions) else {
        v.name: summarise(per_question[per_question["variant"] == v.name], v) for v in config.variants if not v.uses_llm}
    if full_half:
        ctx.write_json("metrics_no_llm_all_questions.json", full_half)

    frames, notes = [], []
    if len(questions) >= 2:
        for metric in TESTED_METRICS:
            scores = tested_scores(on_common, metric)
            if len(next(iter(scores.values()))) >= 2:
                frames.append(paired_table(scores, config.baseline, test=config.test, correction=config.correction,
                                           n_boot=config.n_boot, seed=config.seed, confidence=config.confidence,
                                           alpha=config.alpha, metric=metric))
        adjust_family(frames, config.correction, config.alpha)
    if frames:
        significance = pd.concat(frames, ignore_index=True)
        ctx.write_csv("significance.csv", significance)
        ctx.write_text("tables/significance.tex", tables_markdown(frames, fmt="latex",
                                                                 caption_prefix=f"{data.name}: answer variants, "))
    from liquid_shared.reporting import plot_paired_differences

    overall = tested_scores(on_common, "overall")
    if len(overall) > 1 and len(questions) >= 2:
        ctx.write_plot("plots/paired_differences_overall.png",
                       lambda p: plot_paired_differences(overall, config.baseline, p, metric="overall accuracy"))
    if described["subsampled"]:
        notes.append(f"subsample: {len(questions)} of the report half's {len(report.questions)} questions "
                     f"(seed {config.seed}); the full measurement is `max_questions = None`")
    ctx.write_json("timings.json", timings)
    ctx.run.log_metrics({f"time.{k}": v for k, v in timings.items()})
    for v in config.variants:
        ctx.log_variant(v.name, metrics[v.name], params={**v.model_dump(), **fitted, "k": config.k})
    from experiments.answer_scoring import render_report

    ctx.write_text("report.md", render_report(config, data.name, described, fitted, settings.dev, metrics, frames,
                                              timings, notes, GOALS, full_half))
    return ExperimentResult(metrics=metrics, notes=notes)
