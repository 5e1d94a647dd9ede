"""The run's retrieval index: ``<run>/index/``, a rag_runtime index (``liquid rag search --index RUN``).

Written from the chunk vectors the document stages already computed (the chunk text embedded
with all-MiniLM-L6-v2, unit norm), so writing it encodes nothing. An index already in the run
folder is updated: rag_runtime writes a new version beside the old one and switches to it by
replacing ``index/manifest.json`` last, so a merge killed mid-write leaves the previous index
servable. Only changed or new documents were processed (and embedded) in this run; the vectors
of the others come from their shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL
from liquid_shared.schemas import Chunk, ChunkMetadata

EMBEDDING_MODEL = DEFAULT_EMBEDDING_MODEL  # what the runner's get_embedder() loads


def write_run_index(folder: Path, chunks: Sequence[Chunk], metadata: Sequence[ChunkMetadata], vectors: np.ndarray,
                    *, source: str | None = None) -> dict[str, Any] | None:
    """Write (or update) the index in ``folder``; returns what changed, ``None`` for a run without chunks."""
    from rag_runtime.documents import etl_documents
    from rag_runtime.index import write_run_index as write

    report = write(folder, etl_documents(chunks, metadata), vectors, embedding_model=EMBEDDING_MODEL, source=source)
    return None if report is None else report.as_dict()
