"""Retrieval quality on BEIR SciFact (test split), against the published numbers.

Published nDCG@10: BM25 (bm25s / rank-bm25, k1=1.5 b=0.75) 0.687 / 0.685; all-MiniLM-L6-v2 0.645.
The first run encodes the 5,183 abstracts (about a minute on 2 cores); the embedding cache makes
later runs fast.
"""

from __future__ import annotations

import pytest

from liquid_shared.data import load_beir
from liquid_shared.metrics.ir import evaluate
from rag_runtime import HybridRetriever, RagIndex, load_beir_corpus

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def scifact(scifact_dir):
    dataset = load_beir(scifact_dir, split="test")
    index = RagIndex.build(load_beir_corpus(scifact_dir))
    return dataset, index


def ndcg10(retriever, dataset) -> float:
    qids = list(dataset.queries)
    results = retriever.search_many([dataset.queries[q] for q in qids], k=100)
    run = {q: {h.id: h.score for h in hits} for q, hits in zip(qids, results, strict=True)}
    return evaluate(run, dataset.qrels, ["ndcg@10"]).mean["ndcg@10"]


def test_scifact_ndcg_bm25_dense_and_hybrid(scifact):
    dataset, index = scifact
    assert len(index.store) == 5183 and len(dataset.queries) == 300
    bm25 = ndcg10(index.bm25, dataset)
    dense = ndcg10(index.dense, dataset)
    rrf = ndcg10(HybridRetriever(index.bm25, index.dense, fusion="rrf"), dataset)
    weighted = ndcg10(HybridRetriever(index.bm25, index.dense, fusion="weighted", dense_weight=0.5), dataset)
    print(f"SciFact nDCG@10: bm25 {bm25:.4f} dense {dense:.4f} hybrid-rrf {rrf:.4f} hybrid-weighted {weighted:.4f}")
    assert bm25 >= 0.66
    assert dense >= 0.64
    assert rrf > max(bm25, dense)
    assert weighted > max(bm25, dense)
