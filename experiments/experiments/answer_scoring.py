"""Scoring of ``rag_answers``: one row per (variant, question), the means per variant, the report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.answer_data import Question
from experiments.answer_metrics import (
    GENERATIVE_F1_BAR,
    contains_span,
    precision_recall_f1,
    squad_exact,
    squad_f1,
    squad_v2_summary,
)
from experiments.answer_runs import AnswerVariant


def score_records(variant: AnswerVariant, questions: Mapping[str, Question], records: Mapping[str, dict[str, Any]],
                  retrieved: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The per-question rows of one variant (a question with no record is an error row)."""
    rows = []
    sentence = variant.style == "extractive"
    for qid, q in questions.items():
        rec = records.get(qid) or {"answer": "", "refused": False, "citations": [], "context": [], "support": None,
                                   "question_share": None, "seconds": math.nan, "requests": 0, "input_tokens": 0,
                                   "output_tokens": 0, "error": "not answered"}
        answered = not rec["refused"] and not rec.get("error")
        prediction = rec["answer"] if answered else ""
        span_right = answered and q.answerable and contains_span(rec["answer"], q.answers)
        f1_right = answered and q.answerable and squad_f1(rec["answer"], q.answers) >= GENERATIVE_F1_BAR
        correct = span_right if sentence else f1_right
        rows.append({
            "variant": variant.name, "question_id": qid, "paragraph": q.paragraph, "answerable": q.answerable,
            "question": q.text, "answer": rec["answer"], "refused": bool(rec["refused"]), "error": rec.get("error"),
            "exact": squad_exact(prediction, q.answers), "f1": squad_f1(prediction, q.answers),
            "span_right": float(span_right), "f1_right": float(f1_right),
            "correct": float(correct) if q.answerable else math.nan,
            "overall": float(correct) if q.answerable else float(bool(rec["refused"])),
            "cited_gold": float(q.paragraph in rec["citations"]) if answered and rec["citations"] else math.nan,
            "retrieved_gold": 1.0 if variant.oracle else float(q.paragraph in retrieved.get(qid, ())),
            "context_gold": float(q.paragraph in rec["context"]),
            "support": rec["support"], "question_share": rec["question_share"],
            "seconds": rec["seconds"], "requests": rec["requests"], "input_tokens": rec["input_tokens"],
            "output_tokens": rec["output_tokens"],
        })
    return rows


def _mean(values) -> float:
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else math.nan


def summarise(df: Any, variant: AnswerVariant) -> dict[str, float]:
    """The means of one variant's rows (``score_records``)."""
    has = df[df["answerable"]]
    answered_has = has[~has["refused"] & has["error"].isna()]
    out = {"answer_accuracy": _mean(has["correct"]), "answer_accuracy_span": _mean(has["span_right"]),
           "answer_accuracy_f1": _mean(has["f1_right"]),
           "accuracy_if_retrieved": _mean(has[has["retrieved_gold"] == 1.0]["correct"]),
           "overall_accuracy": _mean(df["overall"])}
    out.update(squad_v2_summary(df["exact"].tolist(), df["f1"].tolist(), df["answerable"].tolist()))
    out["citation_accuracy"] = _mean(answered_has["cited_gold"])
    out["retrieval_recall"] = _mean(has["retrieved_gold"])
    out["context_recall"] = _mean(has["context_gold"])
    refusal = precision_recall_f1(df["refused"].tolist(), (~df["answerable"]).tolist())
    out.update({f"refusal_{k}": v for k, v in refusal.items() if k in ("precision", "recall", "f1")})
    out["answered_share"] = _mean((~df["refused"]).astype(float))
    checked = answered_has[answered_has["support"].notna()]
    if len(checked):
        sup = precision_recall_f1([bool(s) for s in checked["support"]], [c == 1.0 for c in checked["correct"]])
        out.update({"support_precision": sup["precision"], "support_recall": sup["recall"],
                    "supported_share": _mean([float(bool(s)) for s in checked["support"]])})
    else:
        out.update({"support_precision": math.nan, "support_recall": math.nan, "supported_share": math.nan})
    out["seconds_per_answer"] = _mean(df["seconds"])
    out["input_tokens_per_answer"] = _mean(df["input_tokens"])
    out["output_tokens_per_answer"] = _mean(df["output_tokens"])
    out["errors"] = float(df["error"].notna().sum())
    out["n_questions"] = float(len(df))
    out["uses_llm"] = float(variant.uses_llm)
    return out


def tested_scores(per_question: Any, metric: str) -> dict[str, dict[str, float]]:
    """``{variant: {question: value}}`` of a tested metric (``correct``: answerable questions only)."""
    df = per_question if metric != "correct" else per_question[per_question["answerable"]]
    return {v: dict(zip(g["question_id"], g[metric].astype(float), strict=True)) for v, g in df.groupby("variant", sort=False)}


HEADLINE = ["answer_accuracy", "answer_accuracy_span", "answer_accuracy_f1", "citation_accuracy", "retrieval_recall",
            "refusal_precision", "refusal_recall", "refusal_f1", "overall_accuracy"]
OFFICIAL = ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"]
DIAGNOSTIC = ["accuracy_if_retrieved", "context_recall", "answered_share", "support_precision", "support_recall",
              "supported_share", "seconds_per_answer", "input_tokens_per_answer", "output_tokens_per_answer", "errors"]


def goal_lines(metrics: Mapping[str, Mapping[str, float]], goals: Mapping[str, float], frames: Sequence[Any],
               baseline: str) -> list[str]:
    """Which variants meet the goals, and which beat the baseline significantly on answer accuracy."""
    beats = set()
    for df in frames:
        if len(df) and df["metric"].iloc[0] == "correct":
            beats = {r["system"] for _, r in df.iterrows() if r["significant"] and r["diff"] > 0}
    lines = ["| variant | " + " | ".join(f"{g} >= {v}" for g, v in goals.items()) + f" | better than {baseline} |",
             "|---|" + "---|" * (len(goals) + 1)]
    for name, m in metrics.items():
        cells = ["yes" if (m.get(g) is not None and not math.isnan(m.get(g)) and m[g] >= v) else "no"
                 for g, v in goals.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if name in beats else '—' if name == baseline else 'no'} |")
    return lines


def render_report(config: Any, data_name: str, described: Mapping[str, Any], fitted: Mapping[str, Any],
                  dev_scores: Mapping[str, Any], metrics: Mapping[str, Mapping[str, float]], frames: Sequence[Any],
                  timings: Mapping[str, float], notes: Sequence[str], goals: Mapping[str, float],
                  full_half: Mapping[str, Mapping[str, float]] | None = None) -> str:
    from experiments.significance import tables_markdown
    from experiments.tables import metrics_table

    rep, dev = described["report"], described["dev"]
    lines = [f"# rag_answers on {data_name}", "",
             f"Split by paragraph (seed {config.seed}): dev {dev['paragraphs']} paragraphs / {dev['questions']} "
             f"questions (fitting only), report {rep['paragraphs']} paragraphs / {rep['questions']} questions "
             f"({rep['answerable']} answerable); answered here: {described['report_questions_answered']} "
             f"({described['report_answerable_answered']} answerable), by the LLM variants {described['llm_questions']} "
             f"({described['llm_answerable']} answerable); the tables below are over the questions every variant "
             f"answered. Each half is its own corpus; k = {config.k}.",
             "", "Fitted on dev (no LLM): " + ", ".join(f"`{k}` = {v}" for k, v in fitted.items())
             + f" (dev overall accuracy of the top-ranked sentence {dev_scores.get('overall_accuracy', math.nan):.3f}).",
             "", "## Answers", "", metrics_table(metrics, HEADLINE),
             "## SQuAD v2.0 official EM / F1 (a refusal is the empty answer)", "", metrics_table(metrics, OFFICIAL),
             "## Diagnostics", "", metrics_table(metrics, DIAGNOSTIC),
             "## Goals", "", *goal_lines(metrics, goals, frames, config.baseline), ""]
    if full_half:
        lines += [f"## No-LLM variants on all {described['report_questions_answered']} questions answered", "",
                  metrics_table(full_half, HEADLINE + ["f1", "HasAns_f1", "NoAns_f1"])]
    if frames:
        lines += [f"## Against the baseline ({config.baseline})", "",
                  f"Paired {config.test} per question, {config.correction} over all "
                  f"{sum(int((~df['is_baseline']).sum()) for df in frames)} tests; `correct` = answer accuracy "
                  "(answerable questions), `overall` = right answer or refusal of an unanswerable question, `f1` = "
                  "official F1.", "", tables_markdown(frames)]
    lines += ["## Timings", "", metrics_table({k: {"seconds": v} for k, v in timings.items()}, row_header="step")]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
