"""Fusion arithmetic (RRF, min-max score fusion), hybrid retrieval and metadata boosts."""

from __future__ import annotations

import pytest

from rag_runtime import (
    HybridRetriever,
    MetadataBoost,
    MetadataFilter,
    min_max_normalize,
    normalized_score_fusion,
    reciprocal_rank_fusion,
)
from rag_runtime.fusion import ranked


def test_rrf_sums_reciprocal_ranks_with_k_60():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63})
    assert [d for d, _ in ranked(fused)] == ["a", "c", "b", "d"]


def test_rrf_weights_and_k():
    fused = reciprocal_rank_fusion([["a", "b"], ["b"]], k=0, weights=[2.0, 0.5])
    assert fused == pytest.approx({"a": 2.0, "b": 2.0 / 2 + 0.5})
    with pytest.raises(ValueError, match="2 weights for 1 result lists"):
        reciprocal_rank_fusion([["a"]], weights=[1, 1])
    with pytest.raises(ValueError, match="not all 0"):
        reciprocal_rank_fusion([["a"]], weights=[0])


def test_min_max_normalisation():
    assert min_max_normalize({"a": 3.0, "b": 1.0, "c": 2.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max_normalize({"a": 0.4, "b": 0.4}) == {"a": 1.0, "b": 1.0}
    assert min_max_normalize({}) == {}


def test_normalized_score_fusion_weights_each_list():
    fused = normalized_score_fusion([{"a": 3.0, "b": 1.0, "c": 2.0}, {"c": 10.0, "d": 0.0}], weights=[0.7, 0.3])
    assert fused == pytest.approx({"a": 0.7, "b": 0.0, "c": 0.7 * 0.5 + 0.3, "d": 0.0})
    assert [d for d, _ in ranked(fused)] == ["a", "c", "b", "d"]  # b and d tie: by id


def test_hybrid_fuse_rrf_on_real_hits(rag_index):
    hybrid = HybridRetriever(rag_index.bm25, rag_index.dense)
    store = rag_index.store
    bm25 = [store.hit(store.row_of[i], s, {"bm25": s}) for i, s in [("finance-4", 5.0), ("finance-0", 2.0)]]
    dense = [store.hit(store.row_of[i], s, {"dense": s}) for i, s in [("finance-0", 0.8), ("medicine-2", 0.5)]]
    hits = hybrid.fuse(bm25, dense, k=3)
    assert [h.id for h in hits] == ["finance-0", "finance-4", "medicine-2"]
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert hits[1].score == pytest.approx(1 / 61) and hits[2].score == pytest.approx(1 / 62)
    assert hits[0].scores == pytest.approx({"bm25": 2.0, "dense": 0.8, "fused": 1 / 61 + 1 / 62})


def test_hybrid_fuse_weighted_and_boosted(rag_index):
    hybrid = HybridRetriever(rag_index.bm25, rag_index.dense, fusion="weighted", dense_weight=0.25)
    store = rag_index.store
    bm25 = [store.hit(store.row_of[i], s, {"bm25": s}) for i, s in [("finance-4", 5.0), ("finance-0", 2.0)]]
    dense = [store.hit(store.row_of[i], s, {"dense": s}) for i, s in [("finance-0", 0.8), ("medicine-2", 0.5)]]
    hits = hybrid.fuse(bm25, dense, k=3)
    assert {h.id: h.score for h in hits} == pytest.approx({"finance-4": 0.75, "finance-0": 0.25, "medicine-2": 0.0})
    boosted = hybrid.fuse(bm25, dense, k=3, boosts=[MetadataBoost(field="categories", value="Economy", factor=2.0)])
    assert {h.id: h.score for h in boosted} == pytest.approx({"finance-4": 1.5, "finance-0": 0.5, "medicine-2": 0.0})
    assert boosted[0].scores["boost"] == 2.0


def test_hybrid_search_finds_what_either_side_finds(rag_index):
    hybrid = rag_index.retriever("hybrid")
    query = "Why did the central bank increase interest rates?"
    hits = hybrid.search(query, k=3)
    assert hits[0].id.startswith("finance-")
    assert {"bm25", "dense", "fused"} <= set(hits[0].scores)
    assert hits == hybrid.search_many([query], k=3)[0]


def test_hybrid_search_with_boost_and_filter(rag_index):
    hybrid = rag_index.retriever("hybrid")
    query = "The goalkeeper saved a penalty"
    plain = hybrid.search(query, k=3)
    assert all(h.id.startswith("sports-") for h in plain)
    boosted = hybrid.search(query, k=3, boosts=[MetadataBoost(field="tags", value="kitchen", factor=100)])
    assert all(h.id.startswith("cooking-") for h in boosted)
    filtered = hybrid.search(query, k=3, filters=MetadataFilter(source=["docs/medicine.md"]))
    assert filtered and all(h.id.startswith("medicine-") for h in filtered)


def test_hybrid_checks_its_options(rag_index):
    with pytest.raises(ValueError, match="dense_weight must be in"):
        HybridRetriever(rag_index.bm25, rag_index.dense, dense_weight=1.5)
    with pytest.raises(ValueError, match="fusion must be"):
        HybridRetriever(rag_index.bm25, rag_index.dense, fusion="max")
