"""Retrieval variants (BM25, dense, hybrid RRF / weighted, hybrid with metadata boosts) run over one
index, each query answered once per variant.

All variants share one ``rag_runtime.RagIndex``: the BM25 and dense candidate lists are computed
once (``candidates`` deep) and every hybrid variant fuses them with ``HybridRetriever.fuse``,
which is exactly what ``HybridRetriever.search_many`` does, without searching again per variant.

Metadata boosts are per query: a document's fused score is multiplied by ``boost_factor`` for each
of its tags or categories whose words (BM25 tokens: lower-cased, stemmed, stop words dropped) all
occur in the query. A corpus with no tags and no categories (any BEIR folder) cannot be boosted:
that variant is skipped with the reason recorded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Run = dict[str, dict[str, float]]


class VariantSpec(BaseModel):
    """One retrieval variant."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="Name in the tables (letters, digits, _ . -).")
    retriever: Literal["bm25", "dense", "hybrid"] = Field(description="BM25, dense (FAISS), or a fusion of both.")
    fusion: Literal["rrf", "weighted"] = Field(
        "rrf", description="Hybrid only: reciprocal rank fusion, or a weighted mean of min-max normalised scores.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Share of the dense list in the fusion.")
    metadata_boost: bool = Field(False, description="Boost documents whose tags/categories occur in the query.")


DEFAULT_VARIANTS = [
    VariantSpec(name="bm25", retriever="bm25"),
    VariantSpec(name="dense", retriever="dense"),
    VariantSpec(name="hybrid_rrf", retriever="hybrid", fusion="rrf"),
    VariantSpec(name="hybrid_weighted", retriever="hybrid", fusion="weighted"),
    VariantSpec(name="hybrid_boost", retriever="hybrid", fusion="rrf", metadata_boost=True),
]

NO_METADATA_REASON = ("the corpus has no tags or categories to boost on (a BEIR corpus has only title and text), "
                      "so hybrid with metadata boosts would equal hybrid RRF")


@dataclass
class VariantRuns:
    runs: dict[str, Run] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    boosted_queries: int = 0


def _to_run(query_ids: Sequence[str], hits: Sequence[Sequence[Any]]) -> Run:
    return {qid: {h.id: float(h.score) for h in row} for qid, row in zip(query_ids, hits, strict=True)}


def has_boostable_metadata(index: Any) -> bool:
    filters = index.store.filters
    return bool(filters.values("tags") or filters.values("categories"))


def query_boosts(index: Any, query_tokens: Sequence[str], factor: float,
                 value_tokens: dict[tuple[str, str], set[str]]) -> list[Any]:
    """The boosts of one query: every tag/category whose tokens all occur in the query."""
    from rag_runtime import MetadataBoost

    present = set(query_tokens)
    return [MetadataBoost(field=fld, value=value, factor=factor)
            for (fld, value), tokens in value_tokens.items() if tokens and tokens <= present]


def _metadata_value_tokens(index: Any) -> dict[tuple[str, str], set[str]]:
    tokenizer = index.bm25.tokenizer
    pairs = [(fld, value) for fld in ("tags", "categories") for value in index.store.filters.values(fld)]
    tokens = tokenizer([value for _, value in pairs]) if pairs else []
    return {pair: set(tok) for pair, tok in zip(pairs, tokens, strict=True)}


def run_variants(index: Any, queries: dict[str, str], variants: Sequence[VariantSpec], *, k: int,
                 candidates: int, boost_factor: float, progress: Any = None) -> VariantRuns:
    """Rank the top ``k`` documents of every query for every variant."""
    from rag_runtime import HybridRetriever

    out = VariantRuns()
    qids, texts = list(queries), list(queries.values())
    depth = max(k, candidates)
    needs_dense = any(v.retriever != "bm25" for v in variants)
    needs_bm25 = any(v.retriever != "dense" for v in variants)
    task = progress.add_task("search", total=int(needs_bm25) + int(needs_dense) + len(variants)) if progress else None

    def step() -> None:
        if progress:
            progress.advance(task)

    bm25_hits: list[list[Any]] = []
    dense_hits: list[list[Any]] = []
    component_seconds = {"bm25": 0.0, "dense": 0.0}
    if needs_bm25:
        t0 = time.perf_counter()
        bm25_hits = index.bm25.search_many(texts, depth)
        component_seconds["bm25"] = time.perf_counter() - t0
        step()
    if needs_dense:
        t0 = time.perf_counter()
        # the shared (cached) encoder that embedded the corpus also embeds the queries: one model load
        from liquid_shared.embeddings import get_embedder

        encoder = get_embedder(index.dense.params.embedding_model)
        dense_hits = index.dense.search_vectors(encoder.encode(texts), depth)
        component_seconds["dense"] = time.perf_counter() - t0
        step()
    boostable = has_boostable_metadata(index)
    value_tokens = _metadata_value_tokens(index) if boostable and any(v.metadata_boost for v in variants) else {}
    query_tokens = index.bm25.tokenizer(texts) if value_tokens else []

    for spec in variants:
        t0 = time.perf_counter()
        if spec.retriever == "bm25":
            out.runs[spec.name] = _to_run(qids, [row[:k] for row in bm25_hits])
            out.seconds[spec.name] = component_seconds["bm25"]
        elif spec.retriever == "dense":
            out.runs[spec.name] = _to_run(qids, [row[:k] for row in dense_hits])
            out.seconds[spec.name] = component_seconds["dense"]
        elif spec.metadata_boost and not boostable:
            out.skipped[spec.name] = NO_METADATA_REASON
        else:
            hybrid = HybridRetriever(index.bm25, index.dense, fusion=spec.fusion, dense_weight=spec.dense_weight,
                                     candidates=candidates)
            fused = []
            for i in range(len(qids)):
                boosts = query_boosts(index, query_tokens[i], boost_factor, value_tokens) if spec.metadata_boost else []
                out.boosted_queries += int(bool(boosts))
                fused.append(hybrid.fuse(bm25_hits[i], dense_hits[i], k, boosts))
            out.runs[spec.name] = _to_run(qids, fused)
            out.seconds[spec.name] = component_seconds["bm25"] + component_seconds["dense"] + time.perf_counter() - t0
        step()
    return out
