"""RAG runtime: dense (FAISS), BM25 (bm25s) and hybrid retrieval, cited answers, an HTTP service
with an MCP server (``/mcp``, or stdio) and an OpenAI-compatible chat API (``/v1``).

    from rag_runtime import RagIndex, build_index
    index = build_index("runs/my-run", "runs/my-run/index")     # an ETL run folder or a BEIR folder
    hits = index.retriever("hybrid").search("what causes X?", k=5)

The public surface is what this module exports (imported lazily, so ``import rag_runtime`` stays
cheap: pydantic-ai, FastAPI and bm25s load only when a name that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AgentPool": "rag_runtime.agent_pool",
    "AnswerChoiceError": "rag_runtime.agent_pool",
    "ConversationRetriever": "rag_runtime.conversation",
    "build_mcp_server": "rag_runtime.mcp_server",
    "Answer": "rag_runtime.answer",
    "AnswerAgent": "rag_runtime.answer",
    "AnswerError": "rag_runtime.answer",
    "Bm25Params": "rag_runtime.bm25",
    "Bm25Retriever": "rag_runtime.bm25",
    "Bm25Tokenizer": "rag_runtime.bm25",
    "DenseParams": "rag_runtime.dense",
    "DenseRetriever": "rag_runtime.dense",
    "DocStore": "rag_runtime.documents",
    "IndexedDoc": "rag_runtime.documents",
    "SourceFormatError": "rag_runtime.documents",
    "load_documents": "rag_runtime.documents",
    "load_etl_run": "rag_runtime.documents",
    "etl_documents": "rag_runtime.documents",
    "load_beir_corpus": "rag_runtime.documents",
    "MetadataBoost": "rag_runtime.filters",
    "MetadataFilter": "rag_runtime.filters",
    "min_max_normalize": "rag_runtime.fusion",
    "normalized_score_fusion": "rag_runtime.fusion",
    "reciprocal_rank_fusion": "rag_runtime.fusion",
    "Hit": "rag_runtime.hits",
    "HybridRetriever": "rag_runtime.hybrid",
    "IndexFormatError": "rag_runtime.index",
    "IndexManifest": "rag_runtime.index",
    "IndexReloader": "rag_runtime.index_reload",
    "ReloadOutcome": "rag_runtime.index_reload",
    "RagIndex": "rag_runtime.index",
    "build_index": "rag_runtime.index",
    "locate_index": "rag_runtime.index",
    "UpdateReport": "rag_runtime.index",
    "write_run_index": "rag_runtime.index",
    "Retriever": "rag_runtime.retriever",
    "create_app": "rag_runtime.service",
    "ServiceLimits": "rag_runtime.service_limits",
    "SupportCheck": "rag_runtime.support",
    "check_support": "rag_runtime.support",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag_runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
