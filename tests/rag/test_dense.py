"""Dense retrieval with FAISS over the real all-MiniLM-L6-v2 encoder: exact ranking, index kinds,
filters, and the id map saved with the index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_runtime import DenseParams, DenseRetriever, DocStore, MetadataFilter

QUERIES = {
    "Which spacecraft took pictures of the moons of a planet?": "astronomy",
    "How long should bread dough be kneaded?": "cooking",
    "Why did the central bank increase rates?": "finance",
    "What hormone controls blood sugar?": "medicine",
    "Who saved the penalty kick?": "sports",
    "How are passwords protected in storage?": "computing",
}


@pytest.fixture(scope="module")
def doc_vectors(rag_index):
    return rag_index.dense.encoder.encode([d.search_text for d in rag_index.store.docs])


@pytest.mark.slow
def test_flat_ranking_is_exact_inner_product_order(rag_index, doc_vectors):
    dense = rag_index.dense
    for query in QUERIES:
        q = dense.encoder.encode([query])[0]
        sims = doc_vectors @ q
        expected = np.argsort(-sims, kind="stable")[:5]
        hits = dense.search(query, k=5)
        assert [h.id for h in hits] == [rag_index.store.ids[i] for i in expected]
        np.testing.assert_allclose([h.score for h in hits], sims[expected], rtol=1e-5, atol=1e-6)
        assert hits[0].scores == {"dense": hits[0].score}


def test_top_hit_is_on_the_query_topic(rag_index):
    results = rag_index.dense.search_many(list(QUERIES), k=1)
    assert [r[0].id.split("-")[0] for r in results] == list(QUERIES.values())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_agree_with_flat_on_a_small_corpus(rag_index, doc_vectors, kind):
    approx = DenseRetriever.from_vectors(rag_index.store, doc_vectors, DenseParams(kind=kind),
                                         encoder=rag_index.dense.encoder)
    assert approx.params.kind == kind
    for query in QUERIES:
        assert [h.id for h in approx.search(query, k=5)] == [h.id for h in rag_index.dense.search(query, k=5)]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_filters_are_applied_inside_the_faiss_search(rag_index, doc_vectors, kind):
    dense = DenseRetriever.from_vectors(rag_index.store, doc_vectors, DenseParams(kind=kind),
                                        encoder=rag_index.dense.encoder)
    query = "Which spacecraft took pictures of the moons of a planet?"
    food = dense.search(query, k=5, filters=MetadataFilter(categories=["food"]))
    assert len(food) == 5 and all(h.id.startswith("cooking-") for h in food)
    science = dense.search(query, k=20, filters=MetadataFilter(tmd=["science"]))  # TMD prefix
    assert {h.id.split("-")[0] for h in science} == {"astronomy", "medicine"} and len(science) == 12
    both = dense.search(query, k=20, filters=MetadataFilter(tmd="science", tags=["clinical"]))
    assert {h.id.split("-")[0] for h in both} == {"medicine"}
    assert dense.search(query, k=5, filters=MetadataFilter(source="docs/nowhere.md")) == []


def test_k_larger_than_the_corpus_returns_every_document(rag_index):
    assert len(rag_index.dense.search("anything", k=500)) == 36


def test_save_and_load_keep_the_id_map(tmp_path, rag_index):
    rag_index.dense.save(tmp_path / "dense")
    assert json.loads((tmp_path / "dense" / "ids.json").read_text()) == rag_index.store.ids
    loaded = DenseRetriever.load(tmp_path / "dense", rag_index.store, encoder=rag_index.dense.encoder)
    query = "How are passwords protected in storage?"
    assert [(h.id, round(h.score, 5)) for h in loaded.search(query, 5)] == \
           [(h.id, round(h.score, 5)) for h in rag_index.dense.search(query, 5)]


def test_load_refuses_an_id_map_that_does_not_match_the_documents(tmp_path, rag_index):
    rag_index.dense.save(tmp_path / "dense")
    reordered = DocStore(list(reversed(rag_index.store.docs)))
    with pytest.raises(ValueError, match="id map does not match"):
        DenseRetriever.load(tmp_path / "dense", reordered)


def test_from_vectors_checks_the_shape(rag_index):
    with pytest.raises(ValueError, match=r"expected a \(36, dim\) array"):
        DenseRetriever.from_vectors(rag_index.store, np.zeros((3, 384), dtype=np.float32))
