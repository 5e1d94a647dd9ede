"""Candidate answer sentences, ranked by how well each answers the question.

The candidates are the sentences of the retrieved chunks (``extractive.split_sentences``, over the
part of each chunk the prompt shows), questions and headings left out, each with the chunk(s) it
occurs in. Three rankings (``Ranking``):

* ``"embedding"``: cosine between the question's and the sentence's vectors (the retriever's own
  encoder, all-MiniLM-L6-v2 by default);
* ``"bm25"``: BM25 (k1 1.5, b 0.75) of the question against the candidate sentences as a small
  corpus (idf over those sentences), with the support check's analyser (stemmed, ``en_plus`` stop
  words);
* ``"combined"`` (default): ``weight * cosine + (1 - weight) * overlap``, where ``overlap`` is the
  share of the question's terms the sentence holds. ``weight`` (``DEFAULT_SELECTION_WEIGHT``, 0.6)
  and the refusal bar on the best score (``SQUAD_MIN_ANSWER_SCORE``, 0.59; off unless asked for)
  were fitted by the ``rag_answers`` experiment on one seeded half of the shared SQuAD v2
  paragraphs and measured on the other (docs/results.md). Without an encoder (a BM25-only index) ``"combined"`` and
  ``"embedding"`` fall back to the overlap alone.

The extractive style offers the model the best ``MAX_CHOICES`` of these, best first (a 135M model
leans to the first options of an enum), or, with ``selection="top"``, answers with the best one and
calls no model at all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rag_runtime.hits import Hit

Ranking = Literal["embedding", "bm25", "combined", "overlap"]
RANKINGS: tuple[str, ...] = ("embedding", "bm25", "combined", "overlap")
# Fitted by rag_answers on the dev half of the shared SQuAD v2 articles (docs/results.md).
DEFAULT_SELECTION_WEIGHT = 0.6
SQUAD_MIN_ANSWER_SCORE = 0.59
BM25_K1, BM25_B = 1.5, 0.75


@dataclass
class Candidate:
    """One candidate sentence: its text, the chunks it occurs in (best first), and its scores."""

    sentence: str
    ids: list[str]
    score: float = 0.0
    cosine: float | None = None
    overlap: float = 0.0
    bm25: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)


def candidate_sentences(hits: Sequence[Hit], max_chars: int) -> list[Candidate]:
    """The answer candidates of ``hits``, in retrieval order (see the module docstring)."""
    from rag_runtime.extractive import MAX_SENTENCE_CHARS, _is_heading, split_sentences

    by_text: dict[str, Candidate] = {}
    for h in hits:
        for sentence in split_sentences(h.text[:max_chars]):
            if sentence.endswith("?") or _is_heading(sentence):
                continue
            cand = by_text.setdefault(sentence[:MAX_SENTENCE_CHARS], Candidate(sentence[:MAX_SENTENCE_CHARS], []))
            if h.id not in cand.ids:
                cand.ids.append(h.id)
    return list(by_text.values())


def _bm25_scores(question_terms: list[str], sentence_terms: list[list[str]]) -> list[float]:
    n = len(sentence_terms)
    if n == 0:
        return []
    avg = sum(len(t) for t in sentence_terms) / n or 1.0
    df = Counter(term for terms in sentence_terms for term in set(terms))
    out = []
    for terms in sentence_terms:
        tf = Counter(terms)
        score = 0.0
        for q in set(question_terms):
            if q not in tf:
                continue
            idf = math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5))
            score += idf * tf[q] * (BM25_K1 + 1) / (tf[q] + BM25_K1 * (1 - BM25_B + BM25_B * len(terms) / avg))
        out.append(score)
    return out


def encoder_of(retriever: Any) -> Any | None:
    """The query encoder behind a dense or hybrid retriever (``encode_queries``), or None (BM25 only)."""
    for obj in (retriever, getattr(retriever, "dense", None)):
        if obj is not None and callable(getattr(obj, "encode_queries", None)):
            return obj
    return None


def rank_candidates(question: str, candidates: list[Candidate], *, ranking: Ranking = "combined",
                    weight: float = DEFAULT_SELECTION_WEIGHT, encoder: Any = None,
                    vectors: np.ndarray | None = None) -> list[Candidate]:
    """``candidates`` scored and sorted best first (ties keep retrieval order).

    ``encoder``: an object with ``encode_queries(texts) -> unit vectors`` (``encoder_of``);
    ``vectors``: the question's vector then one per candidate, when the caller has them already."""
    from rag_runtime.support import _tokenizer, terms_of

    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"selection weight must be in [0, 1], got {weight}")
    if not candidates:
        return []
    wanted = terms_of(question)
    for c in candidates:
        c.overlap = len(wanted & terms_of(c.sentence)) / len(wanted) if wanted else 0.0
    if ranking == "bm25":
        tok = _tokenizer()
        scores = _bm25_scores(tok([question])[0], tok([c.sentence for c in candidates]))
        for c, s in zip(candidates, scores, strict=True):
            c.bm25 = c.score = float(s)
    else:
        if ranking in ("embedding", "combined") and (encoder is not None or vectors is not None):
            if vectors is None:
                vectors = np.asarray(encoder.encode_queries([question, *[c.sentence for c in candidates]]))
            q, rest = vectors[0], vectors[1:]
            for c, v in zip(candidates, rest, strict=True):
                c.cosine = float(np.dot(q, v))
        for c in candidates:
            if c.cosine is None or ranking == "overlap":
                c.score = c.overlap
            elif ranking == "embedding":
                c.score = c.cosine
            else:
                c.score = weight * c.cosine + (1 - weight) * c.overlap
    for c in candidates:
        c.scores = {"score": c.score, "overlap": c.overlap, **({"cosine": c.cosine} if c.cosine is not None else {}),
                    **({"bm25": c.bm25} if ranking == "bm25" else {})}
    return sorted(candidates, key=lambda c: -c.score)


def ranked_sentences(question: str, hits: Sequence[Hit], max_chars: int, *, ranking: Ranking = "combined",
                     weight: float = DEFAULT_SELECTION_WEIGHT, encoder: Any = None) -> list[Candidate]:
    """The candidate sentences of ``hits`` ranked for ``question``, best first."""
    return rank_candidates(question, candidate_sentences(hits, max_chars), ranking=ranking, weight=weight,
                           encoder=encoder)
