"""The run's FAISS index: ``index/chunks.faiss``, ``index/id_map.json``, ``index/metadata.jsonl``.

An exact ``IndexFlatIP`` over the chunks' unit vectors (inner product = cosine), one row per
chunk in merge order; the id map names the embedding model the RAG runtime must query with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liquid_shared.atomic import atomic_path, write_json_atomic
from liquid_shared.schemas import Chunk, ChunkMetadata, write_jsonl

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def index_rows(chunks: Sequence[Chunk], metadata: Sequence[ChunkMetadata]) -> list[dict[str, Any]]:
    """One ``index/metadata.jsonl`` row per chunk (what a search hit shows without the chunk file)."""
    category = {m.chunk_id: m.category for m in metadata}
    return [
        {
            "row": i,
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
            "source": c.metadata.get("source"),
            "position": c.position,
            "section_path": c.section_path,
            "tmd": c.metadata.get("tmd"),
            "category": category.get(c.chunk_id),
        }
        for i, c in enumerate(chunks)
    ]


def write_faiss_index(folder: Path, vectors: np.ndarray, ids: list[str], rows: list[dict[str, Any]], dim: int) -> None:
    """Write the three index files, each atomically (the id map last)."""
    import faiss

    index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    with atomic_path(folder / "chunks.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    write_jsonl(folder / "metadata.jsonl", rows)
    write_json_atomic(
        folder / "id_map.json",
        {"ids": ids, "model": EMBEDDING_MODEL, "dim": dim, "metric": "inner product of unit vectors (cosine)"},
    )
