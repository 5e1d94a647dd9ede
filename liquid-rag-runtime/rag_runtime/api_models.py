"""Request and response bodies of the HTTP service, with their bounds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rag_runtime.answer import Answer, AnswerMode, AnswerStyle
from rag_runtime.filters import MetadataBoost, MetadataFilter
from rag_runtime.hits import Hit

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_ASK_K = 20
MAX_BOOSTS = 20
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def _describe_input(value: Any) -> str:
    if isinstance(value, str) and len(value) > 60:
        return f"a string of {len(value)} characters"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(errors: list[dict]) -> tuple[str, list[dict]]:
    """One readable line plus a compact list (field, message, type), from pydantic's errors."""
    items = []
    for err in errors:
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        message = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            field, message = "body", f"not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        elif "input" in err and err.get("type") != "missing":
            message = f"{message} (got {_describe_input(err['input'])})"
        items.append({"field": field, "message": message, "type": err.get("type", "")})
    return "; ".join(f"{i['field']}: {i['message']}" for i in items), items


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
    answer_mode: AnswerMode | None = Field(None, description="auto, tool or context (default: the server's); "
                                                             "within what the server allows.")
    answer_style: AnswerStyle | None = Field(None, description="generative or extractive (default: the server's); "
                                                               "within what the server allows.")
    stream: bool = Field(False, description="Answer as server-sent events (text/event-stream): context, "
                                            "delta..., answer (see service_stream).")

    _question_not_blank = field_validator("question")(_not_blank)


class AskResponse(Answer):
    took_ms: float


class ReloadHealth(BaseModel):
    """The index reload's state (``index_reload``); the error text is in ``POST /admin/reload``'s answer
    and the log, not here (``/health`` is open)."""

    status: Literal["ok", "reloading", "failed"] = Field(
        description="failed: the last reload attempt failed and the previous version is still served.")
    interval_s: float = Field(description="Seconds between checks of the index folder's manifest (0: no watcher).")
    reloads: int = Field(description="Successful reloads since start.")
    failures: int = Field(description="Failed reload attempts since start.")
    last_attempt_at: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    documents: int
    modes: list[str]
    embedding_model: str | None
    index_created_at: str
    index_version: str | None = Field(None, description="The served manifest's SHA-256, first 16 hex digits.")
    reload: ReloadHealth | None = None
    auth: bool
