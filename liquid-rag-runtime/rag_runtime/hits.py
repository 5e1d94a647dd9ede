"""What every retriever returns: a ranked ``Hit`` per document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Hit(BaseModel):
    """One retrieved document (or chunk), best first in a result list.

    ``score`` is the retriever's own score (BM25, cosine, or the fused score); ``scores`` keeps the
    component scores by retriever name (``"bm25"``, ``"dense"``, and ``"fused"`` for hybrid hits),
    so a caller can see why a document was ranked where it is.
    """

    id: str = Field(description="Document or chunk id (the ETL chunk_id, or the BEIR _id).")
    score: float
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)
