"""An ETL run folder as the review page sees it: every QA pair with its chunk, the span of the chunk
its answer comes from, and the ETL's own verdict (kept apart, so the page can hide it).

Read-only: the run folder's files (``qa_pairs.jsonl``, ``validation.jsonl``, ``chunks.jsonl``,
``report.json``, ``manifest.json``) are opened for reading and nothing is written there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liquid_shared.metrics.generation import normalize_answer
from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

RUN_FILES = ("qa_pairs.jsonl", "validation.jsonl", "chunks.jsonl")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
MIN_SENTENCE_F1 = 0.3  # below it no sentence is highlighted: the answer is not visibly from the chunk


class ReviewRunError(ValueError):
    """The folder is not an ETL run folder the review page can read."""


@dataclass(frozen=True)
class EtlVerdict:
    """What the ETL decided about a pair (``validation.jsonl``)."""

    valid: bool
    grounded: bool
    grounding_score: float
    judge_score: float | None
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "grounded": self.grounded, "grounding_score": self.grounding_score,
                "judge_score": self.judge_score, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class ReviewPair:
    qa_id: str
    chunk_id: str
    doc_id: str
    question: str
    answer: str
    chunk: str
    source: str
    qa_mode: str
    span: tuple[int, int] | None  # character offsets of the answer's span in ``chunk``
    span_kind: str  # "exact" (the answer occurs in the chunk), "sentence" (the closest sentence), "none"
    etl: EtlVerdict | None = field(default=None)

    def to_page(self) -> dict[str, Any]:
        """What the page gets before the reviewer has judged: no ETL verdict."""
        return {"qa_id": self.qa_id, "chunk_id": self.chunk_id, "doc_id": self.doc_id, "question": self.question,
                "answer": self.answer, "chunk": self.chunk, "source": self.source, "qa_mode": self.qa_mode,
                "span": list(self.span) if self.span else None, "span_kind": self.span_kind}


def _token_f1(a: list[str], b: list[str]) -> float:
    from collections import Counter

    same = sum((Counter(a) & Counter(b)).values())
    if not same:
        return 0.0
    p, r = same / len(a), same / len(b)
    return 2 * p * r / (p + r)


def answer_span(chunk: str, answer: str) -> tuple[tuple[int, int] | None, str]:
    """Where ``answer`` sits in ``chunk``: its first case-insensitive occurrence (``"exact"``), else
    the chunk sentence with the highest SQuAD token F1 against it when that reaches 0.3
    (``"sentence"``), else ``(None, "none")``."""
    needle = answer.strip().rstrip(".").strip()
    if needle:
        at = chunk.lower().find(needle.lower())
        if at >= 0:
            return (at, at + len(needle)), "exact"
    target = normalize_answer(answer).split()
    best, best_f1 = None, 0.0
    for m in _SENTENCE.finditer(chunk):
        f1 = _token_f1(normalize_answer(m.group()).split(), target) if target else 0.0
        if f1 > best_f1:
            start = m.start() + (len(m.group()) - len(m.group().lstrip()))
            best, best_f1 = (start, m.end()), f1
    if best is not None and best_f1 >= MIN_SENTENCE_F1:
        return best, "sentence"
    return None, "none"


def _qa_mode(run: Path) -> str:
    report = run / "report.json"
    if report.is_file():
        try:
            mode = json.loads(report.read_text(encoding="utf-8"))["run"]["config"]["qa_mode"]
            if isinstance(mode, str):
                return mode
        except (ValueError, KeyError, TypeError):
            pass
    return "unknown"


def _sources(run: Path) -> dict[str, str]:
    manifest = run / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    docs = data.get("documents", data) if isinstance(data, dict) else data
    out = {}
    for d in docs if isinstance(docs, list) else []:
        if isinstance(d, dict) and "doc_id" in d:
            out[d["doc_id"]] = str(d.get("source", ""))
    return out


@dataclass
class ReviewRun:
    """The pairs of one run folder, in file order, by ``qa_id``."""

    folder: Path
    pairs: dict[str, ReviewPair]

    @classmethod
    def load(cls, folder: str | Path) -> ReviewRun:
        run = Path(folder)
        if not run.is_dir():
            raise ReviewRunError(f"run folder {run} does not exist or is not a folder")
        missing = [name for name in RUN_FILES if not (run / name).is_file()]
        if missing:
            raise ReviewRunError(f"{run} is not a finished ETL run folder: {', '.join(missing)} missing "
                                 "(run `python -m etl_pipeline.run_etl` first)")
        chunks = {c.chunk_id: c for c in read_jsonl(run / "chunks.jsonl", Chunk)}
        verdicts = {v.qa_id: v for v in read_jsonl(run / "validation.jsonl", ValidationResult)}
        mode, sources = _qa_mode(run), _sources(run)
        pairs: dict[str, ReviewPair] = {}
        for qa in read_jsonl(run / "qa_pairs.jsonl", QAPair):
            chunk = chunks.get(qa.chunk_id)
            if chunk is None:
                raise ReviewRunError(f"{run / 'qa_pairs.jsonl'}: pair {qa.qa_id} names chunk {qa.chunk_id}, "
                                     "which chunks.jsonl does not hold")
            v = verdicts.get(qa.qa_id)
            span, kind = answer_span(chunk.text, qa.answer)
            pairs[qa.qa_id] = ReviewPair(
                qa_id=qa.qa_id, chunk_id=qa.chunk_id, doc_id=qa.doc_id, question=qa.question, answer=qa.answer,
                chunk=chunk.text, source=sources.get(qa.doc_id) or str(chunk.metadata.get("source", "")),
                qa_mode=mode, span=span, span_kind=kind,
                etl=None if v is None else EtlVerdict(v.valid, v.grounded, v.grounding_score, v.judge_score,
                                                      list(v.reasons)))
        if not pairs:
            raise ReviewRunError(f"{run / 'qa_pairs.jsonl'} holds no QA pairs: nothing to review")
        return cls(run, pairs)
