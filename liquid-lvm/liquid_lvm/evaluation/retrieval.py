"""Where the true next chunk ranks among EVERY chunk of a bank, by FAISS.

The bank is the unit-normalised chunk vectors of one split (e.g. all test chunks). For each
prediction the rank of its true target is 1 + the number of bank vectors with a strictly higher
inner product with the normalised prediction (FAISS ranks the whole bank), so Recall@k (rank <= k), reciprocal rank and LCM's contrastive accuracy (share of the
other bank vectors farther from the prediction than the truth; with unit bank vectors the L2
order is the inner-product order) all come from one exact rank. The ``top_k`` nearest bank
rows decode a prediction to the text of its nearest chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class BankRanks:
    rank: np.ndarray          # 1-based rank of the target in the bank, per query
    top: np.ndarray           # [Q, k] bank positions of the nearest vectors
    bank_size: int

    def recall(self, k: int) -> np.ndarray:
        return (self.rank <= k).astype(np.float64)

    def reciprocal_rank(self) -> np.ndarray:
        return 1.0 / self.rank

    def contrastive_accuracy(self) -> np.ndarray:
        return 1.0 - (self.rank - 1) / max(1, self.bank_size - 1)


class Bank:
    """A FAISS inner-product index over the unit vectors of one split's chunks."""

    def __init__(self, vectors: np.ndarray):
        import faiss

        if vectors.ndim != 2 or len(vectors) < 2:
            raise ValueError(f"a retrieval bank needs at least 2 vectors [M, D], got shape {vectors.shape}")
        self.vectors = _unit(vectors)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def ranks(self, preds: np.ndarray, target_pos: np.ndarray, top_k: int = 10) -> BankRanks:
        """Rank of bank row ``target_pos[i]`` for prediction ``i`` among all bank rows."""
        q = _unit(preds)
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"predictions have dimension {q.shape[1]}, the bank {self.vectors.shape[1]}")
        target_pos = np.asarray(target_pos, dtype=np.int64)
        rank = np.empty(len(q), dtype=np.int64)
        top = np.empty((len(q), min(top_k, len(self))), dtype=np.int64)
        for lo in range(0, len(q), 1024):  # the whole bank, sorted, 1024 queries at a time
            scores, ids = self.index.search(q[lo:lo + 1024], len(self))
            own = ids == target_pos[lo:lo + 1024, None]  # the target's score as FAISS computed it
            target_score = np.where(own, scores, 0.0).sum(axis=1)
            rank[lo:lo + 1024] = 1 + (scores > target_score[:, None]).sum(axis=1)
            top[lo:lo + 1024] = ids[:, :top.shape[1]]
        return BankRanks(rank=rank, top=top, bank_size=len(self))
