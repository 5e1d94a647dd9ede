"""Rank fusion arithmetic: reciprocal rank fusion and min-max normalised score fusion.

* RRF (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with 1-based ranks and
  ``k = 60``; a document absent from ranking i gets nothing from it.
* Normalised score fusion: each list's scores are min-max normalised to [0, 1] over the list
  (``(s - min) / (max - min)``; a list whose scores are all equal normalises to 1.0), then
  ``score(d) = sum_i w_i * norm_i(d)``, a document absent from list i counting 0 there.

Ties in a fused ranking are broken by document id (ascending) so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RRF_K = 60


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} result lists")
    if any(w < 0 for w in weights) or not any(weights):
        raise ValueError(f"fusion weights must be >= 0 and not all 0, got {weights}")
    return weights


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Fuse ranked id lists (best first) by reciprocal rank."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, _check_weights(weights, len(rankings)), strict=True):
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return fused


def min_max_normalize(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale a list's scores to [0, 1]; all 1.0 when they are all equal."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return dict.fromkeys(scores, 1.0)
    return {d: (s - lo) / (hi - lo) for d, s in scores.items()}


def normalized_score_fusion(
    score_lists: Sequence[Mapping[str, float]], weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Weighted sum of min-max normalised scores ({id: score} per list)."""
    fused: dict[str, float] = {}
    for scores, weight in zip(score_lists, _check_weights(weights, len(score_lists)), strict=True):
        for doc_id, s in min_max_normalize(scores).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * s
    return fused


def ranked(fused: Mapping[str, float]) -> list[tuple[str, float]]:
    """(id, score) pairs, best first, ties by id."""
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
