"""The questions of ``rag_answers``: every SQuAD v2.0 question with its paragraph, split by paragraph.

The corpus is every paragraph of the file (id ``<article>-<paragraph>``, title = the article's
title, as ``liquid_shared.data.squad``). Every question, answerable or not, keeps the id of the
paragraph it was written on and its human answers (``[]`` for an unanswerable one).

``split_by_paragraph`` deals the paragraphs (never the questions) into two seeded halves: ``dev``,
on which the settings are fitted, and ``report``, on which they are measured; no paragraph, so no
passage, is in both.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    paragraph: str
    answers: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class Paragraph:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class AnswerSet:
    """Paragraphs and their questions (the whole file, or one half of it)."""

    name: str
    paragraphs: dict[str, Paragraph]
    questions: dict[str, Question]

    def half(self, name: str, paragraph_ids: Sequence[str]) -> AnswerSet:
        keep = set(paragraph_ids)
        return AnswerSet(name, {p: self.paragraphs[p] for p in self.paragraphs if p in keep},
                         {q.id: q for q in self.questions.values() if q.paragraph in keep})

    def describe(self) -> dict[str, Any]:
        answerable = sum(q.answerable for q in self.questions.values())
        return {"name": self.name, "paragraphs": len(self.paragraphs), "questions": len(self.questions),
                "answerable": answerable, "unanswerable": len(self.questions) - answerable}


def answer_set(squad: dict[str, Any], name: str) -> AnswerSet:
    """Every paragraph and question of a loaded SQuAD v2.0 file (``squad_eval.load_squad``)."""
    paragraphs: dict[str, Paragraph] = {}
    questions: dict[str, Question] = {}
    for a, article in enumerate(squad["data"]):
        title = str(article.get("title", "")).replace("_", " ")
        for p, para in enumerate(article["paragraphs"]):
            pid = f"{a}-{p}"
            paragraphs[pid] = Paragraph(pid, title, para["context"])
            for n, qa in enumerate(para.get("qas", [])):
                qid = str(qa.get("id") or f"{pid}-q{n}")
                if qid in questions:
                    raise ValueError(f"{name}: question id {qid!r} occurs twice")
                answers = () if qa.get("is_impossible") else tuple(a_["text"] for a_ in qa.get("answers", []))
                if not qa.get("is_impossible") and not answers:
                    raise ValueError(f"{name}: question {qid!r} is answerable but has no answers")
                questions[qid] = Question(qid, qa["question"], pid, answers)
    if not questions:
        raise ValueError(f"{name}: no questions")
    return AnswerSet(name, paragraphs, questions)


def split_by_paragraph(data: AnswerSet, seed: int, dev_share: float = 0.5) -> tuple[AnswerSet, AnswerSet]:
    """(dev, report): the paragraphs shuffled with ``seed``, the first ``dev_share`` of them dev."""
    if not 0 < dev_share < 1:
        raise ValueError(f"dev_share must be in (0, 1), got {dev_share}")
    ids = sorted(data.paragraphs)
    random.Random(seed).shuffle(ids)
    n_dev = max(1, min(len(ids) - 1, round(len(ids) * dev_share)))
    if len(ids) < 2:
        raise ValueError(f"{data.name}: {len(ids)} paragraph; a dev/report split needs at least 2")
    return data.half("dev", ids[:n_dev]), data.half("report", ids[n_dev:])


def subsample(questions: dict[str, Question], n: int | None, seed: int) -> dict[str, Question]:
    """A seeded sample of ``n`` questions, as many answerable as unanswerable where both have enough
    (``None``: all of them), in file order."""
    if n is None or n >= len(questions):
        return questions
    rng = random.Random(seed)
    has = [q for q in questions if questions[q].answerable]
    no = [q for q in questions if not questions[q].answerable]
    n_no = min(len(no), n // 2)
    n_has = min(len(has), n - n_no)
    n_no = min(len(no), n - n_has)
    keep = set(rng.sample(has, n_has)) | set(rng.sample(no, n_no))
    return {q: questions[q] for q in questions if q in keep}


def default_squad_file() -> Path | None:
    """The shared SQuAD file: under ``LIQUID_DATA_DIR`` when set, else ``<project>/../shared/data`` (where
    every checkout finds the shared data), if it is there."""
    from experiments.eval_data import shared_data_file
    from experiments.squad_eval import SQUAD_FILE
    from liquid_shared.tracking import project_root

    configured = shared_data_file(SQUAD_FILE)
    if configured is not None:
        return configured
    beside = project_root().parent / "shared" / "data" / SQUAD_FILE
    return beside if beside.is_file() else None


def load_answer_set(path: Path | None) -> AnswerSet:
    """The questions of the SQuAD v2.0 file at ``path`` (default: ``default_squad_file``)."""
    from experiments.squad_eval import load_squad

    path = path or default_squad_file()
    squad = load_squad(path)
    return answer_set(squad, Path(path).stem)
