"""Fitting ``rag_answers``' settings on the dev half, without any LLM call.

Everything fitted here is read off retrieval and the sentence ranking alone, so it is cheap and
it sees only what it is given: ``fit_settings(dev, ...)`` builds its own index over the dev
paragraphs and asks only the dev questions (a test checks that no report paragraph or question
reaches it).

1. ``dense_weight`` of hybrid RRF: the grid value with the best recall@k of the question's own
   paragraph (ties: the better MRR@k, then the value nearest 0.5, the untuned default), answerable
   questions only.
2. ``selection_weight`` of the ``combined`` ranking: the grid value whose top sentence holds a
   human answer span most often (answerable questions; ties: nearest the default).
3. ``min_similarity`` (the retrieval refusal bar on the dense score) and ``min_answer_score`` (the
   refusal bar on the best sentence's ranking score), jointly: the grid pair with the best overall
   accuracy over every dev question, an answerable one counting when its top sentence is right and
   an unanswerable one when it is refused. This is SQuAD v2.0's own way of setting a no-answer
   threshold (the official script's best-threshold search), applied to the dev half only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from experiments.answer_data import AnswerSet

FUSION_GRID = tuple(round(x * 0.1, 1) for x in range(11))
WEIGHT_GRID = tuple(round(x * 0.1, 1) for x in range(11))
SIMILARITY_GRID = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass
class FittedSettings:
    dense_weight: float
    selection_weight: float
    min_similarity: float
    min_answer_score: float
    dev: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemoEncoder:
    """An embedder (``encode(texts)``) that remembers every text's vector: questions and sentences recur
    across variants, and retrieval encodes the same question again for each."""

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self.dim = getattr(embedder, "dim", None)

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped embedder's
        return getattr(self.embedder, name)

    def encode(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> np.ndarray:
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for t, v in zip(missing, np.asarray(self.embedder.encode(missing, *args, **kwargs)), strict=True):
                self._vectors[t] = v
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def warm(self, data: AnswerSet, questions: Any, max_chars: int) -> None:
        """Encode every question and every candidate sentence of ``data``'s paragraphs in one batch."""
        from rag_runtime import Hit
        from rag_runtime.answer_selection import candidate_sentences

        hits = [Hit(id=p.id, score=0.0, text=p.text) for p in data.paragraphs.values()]
        self.encode_queries(list(dict.fromkeys([*(q.text for q in questions),
                                                *(c.sentence for c in candidate_sentences(hits, max_chars))])))


def build_answer_index(data: AnswerSet, embedding_model: str | None = None) -> Any:
    from rag_runtime import DenseParams, IndexedDoc, RagIndex

    docs = [IndexedDoc(id=p.id, text=p.text, title=p.title) for p in data.paragraphs.values()]
    params = DenseParams(embedding_model=embedding_model) if embedding_model else None
    index = RagIndex.build(docs, dense_params=params, source=data.name, source_kind="squad")
    index.dense.encoder = MemoEncoder(index.dense.encoder)
    return index


def _nearest_default(values: Sequence[float], default: float) -> float:
    return min(values, key=lambda v: (abs(v - default), v))


def fit_settings(dev: AnswerSet, *, k: int, max_chars: int, embedding_model: str | None = None,
                 index: Any = None) -> FittedSettings:
    """The settings fitted on ``dev`` (see the module docstring). ``index``: one already built over
    exactly ``dev``'s paragraphs (built here when None)."""
    from experiments.answer_metrics import contains_span
    from rag_runtime.answer_selection import candidate_sentences, rank_candidates

    if index is None:
        index = build_answer_index(dev, embedding_model)
    if set(index.store.ids) != set(dev.paragraphs):
        raise ValueError("fit_settings: the index must hold exactly the dev paragraphs")
    questions = list(dev.questions.values())
    answerable = [q for q in questions if q.answerable]
    if not answerable:
        raise ValueError(f"{dev.name}: no answerable question to fit on")
    texts = [q.text for q in questions]

    # 1. fusion weight (both candidate lists computed once, fused per weight as HybridRetriever does)
    from rag_runtime import HybridRetriever

    depth = min(len(index.store), 100)  # the hybrid retriever's default candidates
    dense_lists = index.dense.search_many(texts, depth)
    bm25_lists = index.bm25.search_many(texts, depth)

    def fused(w: float) -> list[list[Any]]:
        hybrid = HybridRetriever(index.bm25, index.dense, dense_weight=w, candidates=depth)
        return [hybrid.fuse(b, d, k) for b, d in zip(bm25_lists, dense_lists, strict=True)]

    fusion_scores = {}
    for w in FUSION_GRID:
        ranks = [next((r for r, h in enumerate(hs, 1) if h.id == q.paragraph), None)
                 for q, hs in zip(questions, fused(w), strict=True) if q.answerable]
        recall = float(np.mean([r is not None for r in ranks]))
        mrr = float(np.mean([1 / r if r else 0.0 for r in ranks]))
        fusion_scores[w] = (recall, mrr)
    best = max(fusion_scores.values())
    dense_weight = _nearest_default([w for w, s in fusion_scores.items() if s == best], 0.5)

    # 2. selection weight, on the fitted retrieval
    all_hits = fused(dense_weight)
    encoder = index.dense.encoder if isinstance(index.dense.encoder, MemoEncoder) else MemoEncoder(index.dense.encoder)
    per_question = []  # (question, hits, candidates with cosine and overlap)
    candidate_lists = [candidate_sentences(hits, max_chars) for hits in all_hits]
    encoder.encode_queries(list(dict.fromkeys([*texts, *(c.sentence for cs in candidate_lists for c in cs)])))
    for q, hits, cands in zip(questions, all_hits, candidate_lists, strict=True):
        rank_candidates(q.text, cands, ranking="combined", weight=0.5, encoder=encoder)
        per_question.append((q, hits, cands))

    def top(cands, w, allowed=None):
        best_c, best_s = None, -np.inf
        for c in cands:
            if allowed is not None and not set(c.ids) & allowed:
                continue
            s = w * c.cosine + (1 - w) * c.overlap
            if s > best_s:
                best_c, best_s = c, s
        return best_c, best_s

    weight_acc = {}
    for w in WEIGHT_GRID:
        right = [bool(c and contains_span(c.sentence, q.answers))
                 for q, _, cands in per_question if q.answerable for c in [top(cands, w)[0]]]
        weight_acc[w] = float(np.mean(right))
    best_acc = max(weight_acc.values())
    from rag_runtime.answer_selection import DEFAULT_SELECTION_WEIGHT

    selection_weight = _nearest_default([w for w, a in weight_acc.items() if a == best_acc], DEFAULT_SELECTION_WEIGHT)

    # 3. the two refusal bars, jointly
    tops = []  # per question, per min_similarity: (score of the best sentence, right?)
    for q, hits, cands in per_question:
        row = {}
        for ms in SIMILARITY_GRID:
            allowed = {h.id for h in hits if h.scores.get("dense", -np.inf) >= ms}
            c, s = top(cands, selection_weight, allowed) if allowed else (None, -np.inf)
            row[ms] = (s, bool(c and q.answerable and contains_span(c.sentence, q.answers)))
        tops.append((q, row))
    score_values = sorted({round(float(s), 3) for _, row in tops for s, _ in row.values() if np.isfinite(s)})
    answer_grid = [-np.inf, *np.quantile(score_values, np.linspace(0, 0.9, 46)).round(3).tolist()] if score_values else [-np.inf]
    best_pair, best_overall = (0.0, -np.inf), -1.0
    for ms in SIMILARITY_GRID:
        for ma in dict.fromkeys(answer_grid):
            ok = 0
            for q, row in tops:
                s, right = row[ms]
                refused = not np.isfinite(s) or s < ma
                ok += (not refused and right) if q.answerable else refused
            overall = ok / len(tops)
            if overall > best_overall + 1e-12:
                best_pair, best_overall = (ms, ma), overall
    min_similarity, min_answer_score = best_pair
    return FittedSettings(
        dense_weight=dense_weight, selection_weight=selection_weight, min_similarity=float(min_similarity),
        min_answer_score=float(min_answer_score) if np.isfinite(min_answer_score) else -1.0,
        dev={"questions": len(questions), "answerable": len(answerable), "paragraphs": len(dev.paragraphs),
             "fusion_recall_mrr": {str(w): s for w, s in fusion_scores.items()},
             "selection_accuracy": {str(w): a for w, a in weight_acc.items()},
             "overall_accuracy": best_overall})
