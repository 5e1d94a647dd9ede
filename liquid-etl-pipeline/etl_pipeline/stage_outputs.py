"""Output types of the LLM stages: small, bounded pydantic models.

Every string and list has a maximum length, so the constrained decoder's JSON always fits the
stage's token budget (a JSON cut by ``max_tokens`` would not parse), and every field is one a
135M model can fill. The classification type is built per run from the configured categories.

Small models pad lists with junk items (``", "``, ``"1. "``); rather than failing the whole
output on them (a greedy retry repeats the same answer), validators clean each item: surrounding
punctuation and list numbering go, empty and repeated items are dropped. Lower bounds that the
grammar cannot express are checked after cleaning.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

_EDGE_JUNK = re.compile(r"^[\s,.;:\-–—*•\"'`(\[{}\])]*(?:\d{1,2}[.)]\s+)?|[\s,;:\-–—*•\"'`(\[{}\]]+$")


def clean_text(text: str) -> str:
    """Strip list numbering, stray punctuation and quotes around a generated string."""
    text = " ".join(_EDGE_JUNK.sub("", text).split())
    if text.endswith(")") and "(" not in text:
        text = text[:-1].rstrip()
    return text


def clean_items(items: list[str], *, min_chars: int = 2) -> list[str]:
    """Cleaned items with at least ``min_chars`` characters and a letter or digit, without repeats."""
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = clean_text(item)
        key = text.lower()
        if len(text) >= min_chars and any(ch.isalnum() for ch in text) and key not in seen:
            seen.add(key)
            out.append(text)
    return out

ImportanceLevel = Literal["low", "medium", "high", "critical"]
QuestionKind = Literal["factual", "conceptual", "procedural", "comparative", "causal"]

Term = Annotated[str, StringConstraints(max_length=30)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetadataOut(_Out):
    """Search labels of one passage."""

    tags: list[Term] = Field(max_length=3, description="topic labels")
    keywords: list[Term] = Field(max_length=4, description="important words from the passage")
    entities: list[Term] = Field(max_length=3, description="names of people, places or things in the passage")
    importance: ImportanceLevel

    @field_validator("tags", "keywords", "entities", mode="after")
    @classmethod
    def _clean(cls, items: list[str]) -> list[str]:
        return clean_items(items)


class TaxonNode(_Out):
    name: Term
    importance: ImportanceLevel

    @field_validator("name", mode="after")
    @classmethod
    def _clean(cls, name: str) -> str:
        return clean_text(name)


class TaxonomyOut(_Out):
    """Where the passage sits in a topic hierarchy, broad to narrow."""

    path: list[TaxonNode] = Field(min_length=1, max_length=3)

    @field_validator("path", mode="after")
    @classmethod
    def _drop_empty(cls, path: list[TaxonNode]) -> list[TaxonNode]:
        kept = [n for n in path if len(n.name) >= 2 and any(ch.isalnum() for ch in n.name)]
        if not kept:
            raise ValueError("no usable topic name in the path")
        return kept


class FactsOut(_Out):
    """Atomic facts: short, self-contained statements the passage makes.

    One string of sentences rather than a list: with a list, SmolLM2 under the JSON grammar
    tends to emit empty items (``[""]``); sentences are split afterwards (``sentences``).
    """

    facts: Annotated[str, StringConstraints(max_length=300)]

    @field_validator("facts", mode="after")
    @classmethod
    def _has_a_fact(cls, facts: str) -> str:
        if not split_facts(facts):
            raise ValueError("no fact of at least 8 characters")
        return facts

    def sentences(self, limit: int = 3) -> list[str]:
        return split_facts(self.facts)[:limit]


def split_facts(text: str) -> list[str]:
    """Whole sentences of ``text`` (a trailing fragment cut by the length limit is dropped), cleaned, without repeats."""
    from etl_pipeline.sentences import sentence_spans

    spans = sentence_spans(text)
    pieces = [text[s:e] for s, e in spans]
    if len(pieces) > 1 and not pieces[-1].rstrip().endswith((".", "!", "?")):
        pieces = pieces[:-1]
    return clean_items(pieces, min_chars=8)


class SummaryOut(_Out):
    summary: Annotated[str, StringConstraints(max_length=220)]

    @field_validator("summary", mode="after")
    @classmethod
    def _clean(cls, summary: str) -> str:
        text = clean_text(summary)
        if len(text) < 10:
            raise ValueError("summary shorter than 10 characters")
        return text


class QAItem(_Out):
    question: Annotated[str, StringConstraints(max_length=100)]
    answer: Annotated[str, StringConstraints(max_length=120)]
    kind: QuestionKind

    @field_validator("question", "answer", mode="after")
    @classmethod
    def _clean(cls, text: str) -> str:
        return " ".join(text.split())


QUESTION_PATTERN = r"^(What|Who|Whom|Whose|When|Where|Which|Why|How|In what|In which) [^?]{8,90}[?]$"


class QuestionOut(_Out):
    """A question written for a given answer (extractive QA). The pattern (enforced by the grammar)
    makes it a wh-question ending in '?': without it SmolLM2-135M often repeats the answer."""

    question: Annotated[str, StringConstraints(max_length=100, pattern=QUESTION_PATTERN)]

    @field_validator("question", mode="after")
    @classmethod
    def _clean(cls, text: str) -> str:
        return " ".join(text.split())


class QAOut(_Out):
    pairs: list[QAItem] = Field(min_length=1, max_length=2)

    @field_validator("pairs", mode="after")
    @classmethod
    def _drop_empty(cls, pairs: list[QAItem]) -> list[QAItem]:
        kept = [p for p in pairs if len(p.question) >= 8 and p.answer]
        if not kept:
            raise ValueError("no pair with a question of at least 8 characters and an answer")
        return kept


class JudgeOut(_Out):
    """An LLM judge's verdict on one QA pair."""

    supported: bool
    score: int = Field(ge=1, le=5, description="1 = wrong, 5 = fully supported")


class BoundaryOut(_Out):
    """Sentence numbers where a new topic starts."""

    starts: list[Annotated[int, Field(ge=1, le=200)]] = Field(max_length=8)


def qa_output_type(max_pairs: int) -> type[QAOut]:
    """``QAOut`` with at most ``max_pairs`` pairs."""
    if max_pairs == 2:
        return QAOut
    return create_model(
        f"QAOut{max_pairs}", __base__=QAOut, pairs=(list[QAItem], Field(min_length=1, max_length=max_pairs))
    )


def classification_output_type(categories: tuple[str, ...]) -> type[BaseModel]:
    """A model with one field ``category`` restricted to ``categories``."""
    return create_model(
        "ClassificationOut",
        __base__=_Out,
        category=(Literal[categories], ...),
    )


def grounded_metadata_type(text: str) -> type[MetadataOut]:
    """``MetadataOut`` whose keywords and entities are spans of ``text`` (the copy constraint)."""
    from liquid_shared.models import span_of

    term = span_of(text)
    return create_model(
        "GroundedMetadataOut", __base__=MetadataOut,
        keywords=(list[term], Field(max_length=4, description="important words from the passage")),
        entities=(list[term], Field(max_length=3, description="names of people, places or things in the passage")),
    )
