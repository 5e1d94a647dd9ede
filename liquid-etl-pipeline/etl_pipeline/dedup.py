"""Near-duplicate QA removal inside one document, by question embedding similarity.

Pairs are visited in a fixed order (chunk position, then generation order); a pair is dropped
when its question's cosine similarity to an already kept question is at least the threshold, or
when the normalised question text is identical. Deterministic for the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def near_duplicate_mask(questions: Sequence[str], vectors: np.ndarray, threshold: float) -> list[bool]:
    """``keep[i]`` for each question; ``vectors`` are unit-norm rows aligned with ``questions``."""
    keep: list[bool] = []
    kept_rows: list[int] = []
    seen_text: set[str] = set()
    for i, question in enumerate(questions):
        norm = " ".join(question.lower().split()).rstrip("?")
        duplicate = norm in seen_text
        if not duplicate and kept_rows:
            duplicate = bool((vectors[kept_rows] @ vectors[i]).max() >= threshold)
        keep.append(not duplicate)
        if not duplicate:
            kept_rows.append(i)
            seen_text.add(norm)
    return keep
