"""Dense retrieval: FAISS over the shared sentence embeddings (all-MiniLM-L6-v2 by default).

Vectors are L2-normalised, so inner product = cosine. Index kinds:

* ``flat`` (default): ``IndexFlatIP``, exact;
* ``ivf``: ``IVF<nlist>,Flat`` (inner product), approximate, ``nprobe`` lists searched per query;
* ``hnsw``: ``HNSW<m>,Flat`` (inner product), approximate, ``ef_search`` candidates per query.

The row of a vector in the FAISS index is the row of its document in the ``DocStore``; the id map
(``ids.json``) is saved next to the index and checked against the documents when loading. Metadata
filters become a FAISS ``IDSelectorBatch`` passed in the search parameters, so filtering happens
inside the search (exact for ``flat`` and ``ivf``; ``hnsw`` may return fewer than k when the
filter keeps few documents).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL  # all-MiniLM-L6-v2, offline
from rag_runtime.documents import DocStore
from rag_runtime.filters import MetadataFilter
from rag_runtime.hits import Hit

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
CONFIG_FILE = "dense_config.json"

DenseKind = Literal["flat", "ivf", "hnsw"]


class DenseParams(BaseModel):
    """How the dense index is built and searched (saved in ``dense/dense_config.json``)."""

    model_config = ConfigDict(extra="forbid")

    kind: DenseKind = "flat"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    dim: int | None = Field(None, description="Vector size; filled in from the encoder at build time.")
    nlist: int | None = Field(None, ge=1, description="ivf: number of lists (default about 4 * sqrt(n)).")
    nprobe: int = Field(16, ge=1, description="ivf: lists searched per query.")
    hnsw_m: int = Field(32, ge=4, description="hnsw: neighbours per node.")
    ef_construction: int = Field(80, ge=8)
    ef_search: int = Field(64, ge=1, description="hnsw: candidates kept while searching.")


_query_encoders: dict[str, object] = {}
_query_lock = threading.Lock()


def query_encoder(model: str = DEFAULT_EMBEDDING_MODEL):
    """A process-wide encoder for queries, loaded once per model, without the on-disk cache.

    Queries are short and mostly new: caching them would write a file per request.
    """
    from liquid_shared.embeddings import Embedder

    with _query_lock:
        if model not in _query_encoders:
            _query_encoders[model] = Embedder(model, cache=False)
        return _query_encoders[model]


def corpus_encoder(model: str = DEFAULT_EMBEDDING_MODEL):
    """The shared encoder with its on-disk cache: re-indexing the same corpus encodes nothing twice."""
    from liquid_shared.embeddings import get_embedder

    return get_embedder(model)


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """Every vector a FAISS index holds, row order (flat and HNSW store them; IVF after a direct map)."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()
    return index.reconstruct_n(0, index.ntotal)


def _new_index(params: DenseParams, dim: int, n: int) -> faiss.Index:
    if params.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if params.kind == "ivf":
        nlist = params.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise ValueError(f"ivf index: nlist={nlist} lists for only {n} vectors; use a smaller nlist or kind='flat'")
        params.nlist = nlist
        return faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index = faiss.index_factory(dim, f"HNSW{params.hnsw_m},Flat", faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    return index


class DenseRetriever:
    """FAISS retriever over a ``DocStore``; queries are encoded with ``encoder``."""

    name = "dense"

    def __init__(self, store: DocStore, index: faiss.Index, params: DenseParams, encoder=None,
                 encoder_model: str | None = None):
        if index.ntotal != len(store):
            raise ValueError(f"FAISS index holds {index.ntotal} vectors for {len(store)} documents")
        self.store = store
        self.index = index
        self.params = params
        self._encoder = encoder
        # what the query encoder is loaded from: params.embedding_model, or the checked path of a
        # model folder inside the index (index.confine_embedding_model)
        self.encoder_model = encoder_model or params.embedding_model

    @property
    def encoder(self):
        """Encodes queries (``encode(texts) -> array``); loaded on first use unless given."""
        if self._encoder is None:
            self._encoder = query_encoder(self.encoder_model)
        return self._encoder

    @encoder.setter
    def encoder(self, encoder) -> None:
        self._encoder = encoder

    @classmethod
    def build(
        cls,
        store: DocStore,
        params: DenseParams | None = None,
        *,
        embedder=None,
        batch_size: int = 256,
        on_progress: Callable[[int], None] | None = None,
    ) -> DenseRetriever:
        """Encode every document (``search_text``) and index the vectors.

        ``on_progress(n)`` is called after each batch with the number of documents just encoded.
        """
        params = (params or DenseParams()).model_copy()
        embedder = embedder or corpus_encoder(params.embedding_model)
        texts = [d.search_text for d in store.docs]
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            parts.append(embedder.encode(batch))
            if on_progress is not None:
                on_progress(len(batch))
        vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
        return cls.from_vectors(store, vectors, params)

    @classmethod
    def from_vectors(cls, store: DocStore, vectors: np.ndarray, params: DenseParams | None = None, encoder=None) -> DenseRetriever:
        """Index precomputed vectors (row i = document i of ``store``)."""
        params = (params or DenseParams()).model_copy()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(store):
            raise ValueError(f"expected a ({len(store)}, dim) array of document vectors, got shape {vectors.shape}")
        params.dim = int(vectors.shape[1])
        index = _new_index(params, params.dim, len(store))
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        return cls(store, index, params, encoder)

    # -- retrieval -----------------------------------------------------------------------------

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(queries))

    def _search_parameters(self, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        kind = self.params.kind
        if kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.params.nprobe)
        if kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.params.ef_search, 1))
        return None if selector is None else faiss.SearchParameters(sel=selector)

    def rank_vectors(self, vectors: np.ndarray, k: int = 10,
                     filters: MetadataFilter | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query vector: (document rows, scores), best first. No ``Hit`` objects made."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return []
        mask = self.store.filters.mask(filters)
        selector = None
        if mask is not None:
            allowed = np.flatnonzero(mask).astype(np.int64)
            if len(allowed) == 0:
                empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
                return [empty for _ in vectors]
            selector = faiss.IDSelectorBatch(allowed)
        k = min(k, len(self.store) if mask is None else int(mask.sum()))
        params = self._search_parameters(selector)
        scores, rows = self.index.search(vectors, k, params=params) if params is not None else self.index.search(vectors, k)
        return [(rr[rr >= 0], ss[rr >= 0]) for rr, ss in zip(rows, scores, strict=True)]

    def search_vectors(self, vectors: np.ndarray, k: int = 10, filters: MetadataFilter | None = None) -> list[list[Hit]]:
        """Top-``k`` documents per query vector (rows of ``vectors``), best first."""
        return [
            [self.store.hit(int(r), float(s), {"dense": float(s)}) for r, s in zip(rows, scores, strict=True)]
            for rows, scores in self.rank_vectors(vectors, k, filters)
        ]

    def rank(self, queries: Sequence[str], k: int = 10,
             filters: MetadataFilter | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Like ``search_many`` but (rows, scores) arrays per query, for fusion and benchmarks."""
        if not queries:
            return []
        return self.rank_vectors(self.encode_queries(queries), k, filters)

    def search(self, query: str, k: int = 10, filters: MetadataFilter | None = None) -> list[Hit]:
        return self.search_many([query], k, filters)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, filters: MetadataFilter | None = None) -> list[list[Hit]]:
        if not queries:
            return []
        return self.search_vectors(self.encode_queries(queries), k, filters)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / IDS_FILE).write_text(json.dumps(self.store.ids))
        (folder / CONFIG_FILE).write_text(self.params.model_dump_json(indent=2))

    @staticmethod
    def load_params(folder: Path) -> DenseParams:
        return DenseParams.model_validate(json.loads((folder / CONFIG_FILE).read_text()))

    @classmethod
    def load(cls, folder: Path, store: DocStore, encoder=None, encoder_model: str | None = None) -> DenseRetriever:
        params = cls.load_params(folder)
        ids = json.loads((folder / IDS_FILE).read_text())
        if ids != store.ids:
            raise ValueError(
                f"{folder / IDS_FILE}: the FAISS id map does not match the index's docs.jsonl "
                f"({len(ids)} ids vs {len(store)} documents, or a different order); rebuild the index"
            )
        index = faiss.read_index(str(folder / INDEX_FILE))
        return cls(store, index, params, encoder, encoder_model)
