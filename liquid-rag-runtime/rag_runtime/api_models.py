"""Request and response bodies of the HTTP service, with their bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rag_runtime.answer import Answer
from rag_runtime.filters import MetadataBoost, MetadataFilter
from rag_runtime.hits import Hit

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_ASK_K = 20
MAX_BOOSTS = 20
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain some non-space text")
    return value


class SearchRequest(BaseModel):
    """``POST /search``. Types are strict: ``"k": "10"`` is refused, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(10, ge=1, le=MAX_K)
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    fusion: Literal["rrf", "weighted"] = "rrf"
    dense_weight: float = Field(0.5, ge=0, le=1)
    filters: MetadataFilter | None = None
    boosts: list[MetadataBoost] = Field(default_factory=list, max_length=MAX_BOOSTS)

    _query_not_blank = field_validator("query")(_not_blank)

    @model_validator(mode="after")
    def _boosts_need_hybrid(self) -> SearchRequest:
        if self.boosts and self.mode != "hybrid":
            raise ValueError(f"boosts apply to mode 'hybrid' only (got mode {self.mode!r})")
        return self


class SearchResponse(BaseModel):
    query: str
    mode: str
    k: int
    hits: list[Hit]
    took_ms: float


class AskRequest(BaseModel):
    """``POST /ask``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(4, ge=1, le=MAX_ASK_K)
    filters: MetadataFilter | None = None
    stream: bool = Field(False, description="Answer as server-sent events (text/event-stream): context, "
                                            "delta..., answer (see service_stream).")

    _question_not_blank = field_validator("question")(_not_blank)


class AskResponse(Answer):
    took_ms: float


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    documents: int
    modes: list[str]
    embedding_model: str | None
    index_created_at: str
    auth: bool
