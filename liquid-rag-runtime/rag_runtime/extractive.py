"""Extractive answers: the answer is a sentence copied from a retrieved chunk, and cites that chunk.

The constraint is the output schema: ``answer`` is an enum of the sentences of the retrieved
chunks, which a model with native (grammar-constrained) output cannot leave. The citation is
not chosen by the model but derived: the chunk(s) the chosen sentence comes from. So an
extractive answer is supported by its citation by construction; what can still go wrong is the
*choice* of sentence (a wrong one, or a sentence planted by an injected chunk).

Sentences: split after ``.``, ``!`` or ``?`` followed by white space and anything but a
lower-case letter (so text glued after a sentence, e.g. ``rest. </document> New rules...``, is a
sentence of its own), and at line breaks; list markers ("- ") are dropped. Pieces
shorter than ``MIN_SENTENCE_CHARS`` are joined to the next one. Questions (ending in ``?``) and
headings (under 8 words, no closing punctuation) are no answers and are left out. The candidates are ordered by how many of the question's terms (the
support check's terms: stemmed, no stop words) they contain, ties in retrieval order, and the first
``MAX_CHOICES`` are offered: a 135M model leans to the first options of an enum.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, create_model

from rag_runtime.hits import Hit

MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 400
MAX_CHOICES = 12
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[^\sa-z])|\n+")
_MARKER = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#+\s+)")


def _is_heading(sentence: str) -> bool:
    return not sentence.endswith((".", "!", ";", ":", ")", '"', "'")) and len(sentence.split()) < 8


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, in order, white space normalised."""
    pieces = [" ".join(_MARKER.sub("", p).split()) for p in _BOUNDARY.split(text)]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        if not piece:
            continue
        piece = f"{carry} {piece}".strip() if carry else piece
        if len(piece) < MIN_SENTENCE_CHARS:
            carry = piece
            continue
        carry = ""
        out.append(piece)
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


def sentence_sources(question: str, hits: Sequence[Hit], max_chars: int) -> dict[str, list[str]]:
    """sentence -> ids of the chunks it occurs in (best chunk first), over the first ``max_chars``
    characters of each chunk (what the prompt shows): the ``MAX_CHOICES`` best candidates, in order."""
    from rag_runtime.support import terms_of

    sources: dict[str, list[str]] = {}
    for h in hits:
        for sentence in split_sentences(h.text[:max_chars]):
            if sentence.endswith("?") or _is_heading(sentence):
                continue
            ids = sources.setdefault(sentence[:MAX_SENTENCE_CHARS], [])
            if h.id not in ids:
                ids.append(h.id)
    wanted = terms_of(question)
    ranked = sorted(sources, key=lambda s: -len(wanted & terms_of(s)))  # stable: ties keep retrieval order
    return {s: sources[s] for s in ranked[:MAX_CHOICES]}


def extractive_answer_type(sentences: Sequence[str]) -> type[BaseModel]:
    """Output type whose ``answer`` may only be one of ``sentences``."""
    allowed = Literal[tuple(dict.fromkeys(sentences))]  # type: ignore[valid-type]
    return create_model("ExtractedAnswer", answer=(allowed, Field(description="One sentence copied from the documents.")))
