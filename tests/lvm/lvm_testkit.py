"""Helpers of the LVM tests: small synthetic corpora for the LVM tests: the next vector is a known function of the context."""

from __future__ import annotations

import numpy as np

from liquid_lvm.data import ChunkCorpus, make_windows, split_documents


def rotation_corpus(n_docs: int = 30, length: int = 12, dim: int = 16, context: int = 4, seed: int = 0,
                    noise: float = 0.0) -> ChunkCorpus:
    """Documents where chunk t+1 = normalise(R @ chunk t) for one fixed random orthogonal R."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    vectors, texts = [], []
    for d in range(n_docs):
        x = rng.normal(size=dim)
        x /= np.linalg.norm(x)
        for t in range(length):
            vectors.append(x.copy())
            texts.append(f"doc{d} chunk{t}")
            x = rot @ x + noise * rng.normal(size=dim)
            x /= np.linalg.norm(x)
    offsets = np.arange(0, n_docs * length + 1, length)
    corpus = ChunkCorpus(vectors=np.asarray(vectors, dtype=np.float32), doc_ids=[f"d{i}" for i in range(n_docs)],
                         titles=[""] * n_docs, offsets=offsets, texts=texts, model="synthetic-rotation")
    corpus.splits = split_documents(n_docs, (0.6, 0.2, 0.2), seed)
    return make_windows(corpus, context)


