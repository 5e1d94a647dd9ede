"""Retrieval evaluation of an encoder: FAISS (``rag_runtime``'s dense retriever) plus trec_eval metrics.

``RetrievalSet`` is a corpus, queries and judgments: a BEIR split (``retrieval_set_from_beir``),
SQuAD paragraphs (``liquid_shared.data.load_squad_retrieval``) or a ``PairSet``'s own pairs.
``evaluate_vectors`` ranks every document for every query by cosine and scores the run with
``liquid_shared.metrics.ir.evaluate`` (per-query nDCG@10 etc., for the paired tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_lvm.encoder.pairs import PairSet, doc_text

Encode = Callable[[Sequence[str]], np.ndarray]
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@dataclass
class RetrievalSet:
    name: str
    doc_keys: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def retrieval_set_from_beir(folder: Path | str, split: str = "test", name: str | None = None) -> RetrievalSet:
    from liquid_shared.data import load_beir

    data = load_beir(folder, split)
    keys = list(data.corpus)
    texts = [doc_text(data.corpus[k].title, data.corpus[k].text) for k in keys]
    return RetrievalSet(name or f"{Path(folder).name}/{split}", keys, texts, dict(data.queries), dict(data.qrels))


def retrieval_set_from_dataset(data, name: str) -> RetrievalSet:
    """From a ``liquid_shared.data.BeirDataset`` (e.g. ``load_squad_retrieval``)."""
    keys = list(data.corpus)
    return RetrievalSet(name, keys, [doc_text(data.corpus[k].title, data.corpus[k].text) for k in keys],
                        dict(data.queries), dict(data.qrels))


def retrieval_set_from_pairs(pairs: PairSet, doc_rows: Sequence[int] | None = None) -> RetrievalSet:
    """The pairs' queries against their documents (all of them, or the rows ``doc_rows`` plus the positives)."""
    queries, qrels = pairs.judgments()
    rows = set(range(len(pairs.docs))) if doc_rows is None else set(doc_rows) | {p for _, p, _ in pairs.triples}
    rows = sorted(rows)
    return RetrievalSet(pairs.name, [pairs.doc_keys[r] for r in rows], [pairs.docs[r] for r in rows], queries, qrels)


def rank(query_vectors: np.ndarray, doc_vectors: np.ndarray, query_keys: Sequence[str], doc_keys: Sequence[str],
         k: int = 100) -> dict[str, dict[str, float]]:
    """Top-``k`` documents per query by inner product (an exact FAISS flat index, as rag_runtime's
    dense retriever uses, built here straight from the vectors)."""
    import faiss

    docs = np.ascontiguousarray(doc_vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    scores, rows = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(k, len(doc_keys)))
    return {qk: {doc_keys[int(r)]: float(sc) for r, sc in zip(rs, ss, strict=True) if r >= 0}
            for qk, rs, ss in zip(query_keys, rows, scores, strict=True)}


def evaluate_vectors(query_vectors: np.ndarray, doc_vectors: np.ndarray, data: RetrievalSet, k: int = 100,
                     metrics: Sequence[str] = METRICS):
    """``liquid_shared.metrics.ir.IRResult`` of cosine retrieval (vectors must be unit norm)."""
    from liquid_shared.metrics.ir import evaluate

    run = rank(query_vectors, doc_vectors, list(data.queries), data.doc_keys, k)
    return evaluate(run, data.qrels, list(metrics))


def evaluate_encoder(encode: Encode, data: RetrievalSet, k: int = 100, metrics: Sequence[str] = METRICS):
    """Encode the corpus and the queries with ``encode`` (unit vectors) and score the retrieval."""
    return evaluate_vectors(encode(list(data.queries.values())), encode(data.doc_texts), data, k, metrics)
