"""Baselines with the models' interface: ``predict(context [B, T, D], mask [B, T]) -> [B, D]``.

* ``copy_last``: the last context vector;
* ``context_mean``: the mean of the (unmasked) context vectors;
* ``ridge``: least squares with an L2 penalty (scikit-learn ``Ridge``) from the flattened
  context ``[T*D]`` to the next vector, fitted on the training windows;
* ``successor``: non-parametric; the training chunk nearest (cosine, FAISS) to the last context
  vector, and the vector of the chunk that follows it in its document.
"""

from __future__ import annotations

import numpy as np

from liquid_lvm.data.corpus import ChunkCorpus

BASELINES = ("copy_last", "context_mean", "ridge", "successor")


class CopyLast:
    name = "copy_last"

    def __call__(self, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return context[:, -1]


class ContextMean:
    name = "context_mean"

    def __call__(self, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = mask[..., None].astype(np.float32)
        return (context * m).sum(1) / np.maximum(m.sum(1), 1.0)


class RidgeBaseline:
    name = "ridge"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self.model = None

    def fit(self, context: np.ndarray, target: np.ndarray) -> RidgeBaseline:
        from sklearn.linear_model import Ridge

        self.model = Ridge(alpha=self.alpha).fit(context.reshape(len(context), -1), target)
        return self

    def __call__(self, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ridge baseline is not fitted; call fit() on the training windows")
        return self.model.predict((context * mask[..., None]).reshape(len(context), -1)).astype(np.float32)


class SuccessorBaseline:
    name = "successor"

    def __init__(self, corpus: ChunkCorpus, split: str = "train"):
        import faiss

        rows = corpus.rows(split)
        doc = corpus.doc_of_row()
        has_next = rows[(rows + 1 < len(corpus.vectors))]
        has_next = has_next[doc[has_next] == doc[np.minimum(has_next + 1, len(doc) - 1)]]
        if has_next.size == 0:
            raise ValueError(f"split {split!r} has no chunk with a successor in its document")
        self.rows = has_next
        self.successors = np.ascontiguousarray(corpus.vectors[has_next + 1], dtype=np.float32)
        keys = np.ascontiguousarray(corpus.vectors[has_next], dtype=np.float32)
        keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        self.index = faiss.IndexFlatIP(keys.shape[1])
        self.index.add(keys)

    def __call__(self, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(context[:, -1], dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        _, nearest = self.index.search(q, 1)
        return self.successors[nearest[:, 0]]
