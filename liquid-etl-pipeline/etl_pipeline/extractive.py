"""Answer-first, extractive QA (Alberti et al. 2019, "Synthetic QA Corpora Generation with
Roundtrip Consistency"; Lewis et al. 2021, PAQ): pick an answer span in the chunk, have the model
write a question for it, have a reader answer that question from the chunk under the copy
constraint (``liquid_shared.models.span_of``), and keep the pair only when the reader's span
agrees with the intended one.

This module holds the model-free parts: the candidate answer spans (a light heuristic, no spaCy:
numbers and dates, runs of capitalised words, and longer content-word phrases as a last resort;
its coverage of SQuAD's human answers is measured by ``qa_generation``) and the roundtrip
verdict. The LLM calls live in ``llm_stages.ChunkStages.qa``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from etl_pipeline.stage_outputs import QAItem
from liquid_shared.metrics import token_f1

_STOP_CAPS = {
    "The", "A", "An", "In", "On", "At", "Of", "For", "And", "But", "Or", "It", "Its", "This", "That",
    "These", "Those", "They", "He", "She", "We", "I", "His", "Her", "Their", "As", "By", "From",
    "With", "When", "While", "After", "Before", "During", "However", "There", "To", "If", "Although",
    "Many", "Some", "Most", "Through", "Since", "Under", "Over", "Both", "Each", "All", "One", "Other", "Such",
}
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December")
_DATE = re.compile(
    rf"\b(?:\d{{1,2}} (?:{_MONTHS})(?: \d{{3,4}})?|(?:{_MONTHS}) \d{{1,2}}(?:, \d{{3,4}})?|(?:{_MONTHS}) \d{{4}})\b"
)
_NUMBER = re.compile(
    r"(?:[$£€])?\b\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?(?:\s?(?:%|percent|million|billion|thousand|km|miles?|"
    r"metres|meters|years?|centuries|century|people|AD|BC))?\b"
)
_CAPS_RUN = re.compile(r"\b[A-Z][\w'’-]*(?:(?:\s(?:of|de|the|and|von|van|la|du)\s|\s)[A-Z][\w'’-]*)*")
_WORD = re.compile(r"[A-Za-z][a-z]{3,}")
_STOPWORDS = {
    "that", "this", "with", "from", "have", "were", "which", "their", "there", "been", "into", "when",
    "also", "they", "them", "than", "then", "such", "some", "most", "more", "other", "over", "only",
    "after", "before", "about", "while", "would", "could", "where", "these", "those", "being", "under",
}


@dataclass(frozen=True)
class Candidate:
    """An answer span of the chunk: ``text == chunk[start:end]``."""

    text: str
    start: int
    kind: str  # "date", "number", "name" or "phrase"


def candidate_spans(text: str) -> list[Candidate]:
    """Answer candidates of a chunk in preference order (dates, numbers, names, phrases),
    each once (the first occurrence), never crossing a line break."""
    found: list[Candidate] = []
    seen: set[str] = set()

    def add(match_text: str, start: int, kind: str) -> None:
        span = match_text.strip(" ,;:.")
        if not span or "\n" in span:
            return
        start += match_text.find(span)
        key = span.lower()
        if key in seen or any(key in s for s in seen if kind in ("number", "name")):
            return
        seen.add(key)
        found.append(Candidate(span, start, kind))

    for m in _DATE.finditer(text):
        add(m.group(), m.start(), "date")
    for m in _NUMBER.finditer(text):
        if re.search(r"\d", m.group()):
            add(m.group(), m.start(), "number")
    names = []
    for m in _CAPS_RUN.finditer(text):
        words = m.group().split()
        while words and words[0] in _STOP_CAPS:
            words = words[1:]
        if not words:
            continue
        span = " ".join(words)
        start = m.start() + m.group().find(words[0])
        if text[start:start + len(span)] != span:
            continue
        names.append((-len(words), start, span))
    for _, start, span in sorted(names, key=lambda n: (n[0] > -2, n[1])):
        add(span, start, "name")
    # phrases: two or three consecutive content words, when the chunk has few names or numbers
    for m in re.finditer(r"\b([a-z][a-z-]{3,})\s([a-z][a-z-]{3,})(?:\s([a-z][a-z-]{3,}))?\b", text):
        words = [w for w in m.groups() if w]
        if not any(w in _STOPWORDS for w in words):
            add(m.group(), m.start(), "phrase")
    return found


def choose_candidates(text: str, n: int) -> list[Candidate]:
    """``n`` candidates spread over kinds: the best date or number, the best names, then phrases."""
    cands = candidate_spans(text)
    by_kind: dict[str, list[Candidate]] = {}
    for c in cands:
        by_kind.setdefault(c.kind, []).append(c)
    order = [*by_kind.get("date", []), *by_kind.get("number", [])][:1] + by_kind.get("name", [])
    rest = [c for c in cands if c not in order]
    return (order + rest)[:n]


class ExtractiveItem(QAItem):
    """A QA item generated answer-first, with its roundtrip check (not an LLM output type)."""

    reader_answer: str
    roundtrip_f1: float
    roundtrip_threshold: float
    span_kind: str

    def roundtrip_reason(self) -> str | None:
        if self.roundtrip_f1 >= self.roundtrip_threshold:
            return None
        return (f"reader disagrees: answered {self.reader_answer!r} for intended {self.answer!r} "
                f"(token F1 {self.roundtrip_f1:.2f} < {self.roundtrip_threshold:.2f})")


_ROUNDTRIP = re.compile(r"^reader disagrees: answered (?P<reader>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") "
                        r"for intended (?P<intended>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") \(token F1")


def parse_roundtrip_reason(reason: str) -> tuple[str, str] | None:
    """``(reader_answer, intended_answer)`` of a reason written by ``ExtractiveItem.roundtrip_reason``, else None."""
    import ast

    m = _ROUNDTRIP.match(reason)
    if m is None:
        return None
    try:
        return str(ast.literal_eval(m["reader"])), str(ast.literal_eval(m["intended"]))
    except (ValueError, SyntaxError):
        return None


def roundtrip_item(question: str, intended: Candidate, reader_answer: str | None, threshold: float) -> ExtractiveItem:
    """The item of one span: its roundtrip F1 is 0 when the reader failed to answer."""
    f1 = token_f1(reader_answer, intended.text) if reader_answer else 0.0
    return ExtractiveItem(
        question=question[:100], answer=intended.text[:120], kind="factual",
        reader_answer=(reader_answer or "")[:200], roundtrip_f1=float(f1), roundtrip_threshold=threshold,
        span_kind=intended.kind,
    )
