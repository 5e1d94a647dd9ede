"""Hybrid retrieval: BM25 and dense candidates fused by RRF or normalised scores, then boosted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rag_runtime.bm25 import Bm25Retriever
from rag_runtime.dense import DenseRetriever
from rag_runtime.filters import MetadataBoost, MetadataFilter
from rag_runtime.fusion import RRF_K, normalized_score_fusion, ranked, reciprocal_rank_fusion
from rag_runtime.hits import Hit

FusionMethod = Literal["rrf", "weighted"]


class HybridRetriever:
    """Fuse the top ``candidates`` of a BM25 and a dense retriever over the same documents.

    ``fusion="rrf"``: reciprocal rank fusion with weights ``(2 * dense_weight, 2 * (1 - dense_weight))``
    for (dense, bm25), so the default ``dense_weight=0.5`` is plain unweighted RRF.
    ``fusion="weighted"``: ``dense_weight * norm(dense) + (1 - dense_weight) * norm(bm25)`` with
    min-max normalisation per list. Boosts multiply the fused score of matching documents.
    """

    name = "hybrid"

    def __init__(
        self,
        bm25: Bm25Retriever,
        dense: DenseRetriever,
        *,
        fusion: FusionMethod = "rrf",
        dense_weight: float = 0.5,
        rrf_k: int = RRF_K,
        candidates: int = 100,
    ):
        if bm25.store is not dense.store:
            raise ValueError("hybrid retrieval needs a BM25 and a dense retriever over the same DocStore")
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.bm25, self.dense, self.store = bm25, dense, bm25.store
        self.fusion, self.dense_weight, self.rrf_k, self.candidates = fusion, dense_weight, rrf_k, candidates

    def fuse(self, bm25_hits: Sequence[Hit], dense_hits: Sequence[Hit], k: int,
             boosts: Sequence[MetadataBoost] = ()) -> list[Hit]:
        """Fuse one query's two candidate lists (each best first) into the top ``k``."""
        return self.fuse_ranked([(h.id, h.score) for h in bm25_hits], [(h.id, h.score) for h in dense_hits], k, boosts)

    def fuse_ranked(self, bm25: Sequence[tuple[str, float]], dense: Sequence[tuple[str, float]], k: int,
                    boosts: Sequence[MetadataBoost] = ()) -> list[Hit]:
        """Fuse two ranked (id, score) lists (best first) into the top ``k`` hits."""
        w = self.dense_weight
        if self.fusion == "rrf":
            fused = reciprocal_rank_fusion([[d for d, _ in dense], [d for d, _ in bm25]], k=self.rrf_k,
                                           weights=[2 * w, 2 * (1 - w)])
        else:
            fused = normalized_score_fusion([dict(dense), dict(bm25)], weights=[w, 1 - w])
        factors = self.store.filters.boost_factors(boosts)
        boosted: dict[str, float] = {}
        if factors is not None:
            for doc_id in fused:
                factor = float(factors[self.store.row_of[doc_id]])
                if factor != 1.0:
                    boosted[doc_id] = factor
                    fused[doc_id] *= factor
        bm25_scores, dense_scores = dict(bm25), dict(dense)
        hits = []
        for doc_id, score in ranked(fused)[:k]:
            components = {}
            if doc_id in dense_scores:
                components["dense"] = float(dense_scores[doc_id])
            if doc_id in bm25_scores:
                components["bm25"] = float(bm25_scores[doc_id])
            if doc_id in boosted:
                components["boost"] = boosted[doc_id]
            components["fused"] = score
            hits.append(self.store.hit(self.store.row_of[doc_id], score, components))
        return hits

    def search(self, query: str, k: int = 10, filters: MetadataFilter | None = None,
               boosts: Sequence[MetadataBoost] = ()) -> list[Hit]:
        return self.search_many([query], k, filters, boosts)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, filters: MetadataFilter | None = None,
                    boosts: Sequence[MetadataBoost] = ()) -> list[list[Hit]]:
        """Encode the queries, take the top ``candidates`` of each side, fuse, boost, cut at ``k``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        depth = max(k, self.candidates)
        ids = self.store.ids
        dense = self.dense.rank(queries, depth, filters)
        lexical = self.bm25.rank(queries, depth, filters)
        return [
            self.fuse_ranked([(ids[r], s) for r, s in zip(br.tolist(), bs.tolist(), strict=True)],
                              [(ids[r], s) for r, s in zip(dr.tolist(), ds.tolist(), strict=True)], k, boosts)
            for (br, bs), (dr, ds) in zip(lexical, dense, strict=True)
        ]
