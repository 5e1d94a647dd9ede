"""The HTTP service: ``/search``, ``/ask``, ``/health``, ``/metrics`` over one index folder.

* Bad requests get a 4xx with a message naming the field and the problem: 422 for invalid bodies
  (bounds on ``k`` and query length, wrong types, unknown fields), 413 for bodies over
  ``max_body_bytes``, 401 for a missing or wrong API key. A 500 means a bug.
* With ``api_key`` set (or ``RAG_API_KEY`` for ``serve``), every endpoint but ``/health`` needs the
  header ``X-API-Key``.
* The index (documents, BM25, FAISS) and the query encoder are loaded once, when the app is
  created; the answer model is made on the first ``/ask``. No endpoint takes a path: the service
  reads no file but those of its index folder, and loads an embedding model only from inside it or
  from ``allowed_embedding_models`` (``index.confine_embedding_model``).
* ``/ask`` with ``"stream": true`` answers as server-sent events (``service_stream``): the retrieved
  chunks, text deltas while the model decodes, then the same JSON as the plain response.
* Limits (``ServiceLimits``, ``service_limits``): concurrent ``/ask`` calls (503 + Retry-After over
  it), a per-request timeout (504), a token bucket per API key (429 + Retry-After, off by default).
* CORS: none unless ``cors_origins`` lists the allowed origins (then GET/POST with the
  ``Content-Type`` and ``X-API-Key`` headers, no credentials).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from rag_runtime.answer import (
    DEFAULT_MIN_SIMILARITY,
    AnswerAgent,
    AnswerError,
    AnswerMode,
    AnswerStyle,
    SupportPolicy,
)
from rag_runtime.api_models import (
    DEFAULT_MAX_BODY_BYTES,
    AskRequest,
    AskResponse,
    HealthResponse,
    SearchRequest,
    SearchResponse,
)
from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS, RagIndex
from rag_runtime.query_batching import BatchingEncoder
from rag_runtime.service_limits import ConcurrencyLimit, RateLimiter, RequestTimeout, ServiceLimits
from rag_runtime.service_middleware import BodySizeLimit, RequestMetrics
from rag_runtime.service_stream import streamed_answer

log = logging.getLogger("rag_runtime.service")
API_KEY_HEADER = "X-API-Key"


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


def create_app(
    index_dir: str | Path | None = None,
    *,
    index: RagIndex | None = None,
    api_key: str | None = None,
    model: Any = None,
    answer_mode: AnswerMode = "auto",
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batch_queries: bool = False,
    answer_style: AnswerStyle = "generative",
    support: SupportPolicy = "flag",
    limits: ServiceLimits | None = None,
    cors_origins: list[str] | None = None,
    allowed_embedding_models: list[str] | tuple[str, ...] = DEFAULT_ALLOWED_EMBEDDING_MODELS,
) -> FastAPI:
    """Build the app over ``index_dir`` (or an already loaded ``index``).

    ``model`` is the pydantic-ai model for ``/ask`` (default: the stack's ``answer`` stage model);
    ``answer_style`` and ``support`` are ``AnswerAgent``'s ``style`` and ``support``.
    ``batch_queries`` encodes the queries of concurrent requests together (``BatchingEncoder``): less
    CPU per request with one torch thread, more with torch's default two (see docs/benchmarks.md).
    ``limits``: ``ServiceLimits()`` when not given. ``cors_origins``: no CORS headers when None.
    ``allowed_embedding_models``: embedding models the index may name besides folders inside it.
    """
    limits = limits or ServiceLimits()
    if index is None:
        if index_dir is None:
            raise ValueError("create_app needs index_dir or index")
        index = RagIndex.load(index_dir, allowed_embedding_models=allowed_embedding_models)
    if index.dense is not None:
        # load the query encoder now, not on the first request; batch concurrent requests' queries
        if batch_queries and not isinstance(index.dense.encoder, BatchingEncoder):
            index.dense.encoder = BatchingEncoder(index.dense.encoder)
        index.dense.encode_queries(["warm-up"])

    app = FastAPI(title="Liquid RAG runtime", version="0.1.0")
    registry = CollectorRegistry()
    Gauge("rag_index_documents", "Documents in the served index", registry=registry).set(len(index.store))
    refusals = Counter("rag_ask_refusals", "Answers refused for lack of relevant chunks", registry=registry)
    state: dict[str, Any] = {"agent": None}
    agent_lock = threading.Lock()

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    rate_limiter = RateLimiter(limits.rate_per_s, limits.burst) if limits.rate_per_s else None

    def check_api_key(request: Request, key: str | None = Depends(key_header)) -> None:
        """Authenticate (401), then take a token from the caller's bucket (429)."""
        if api_key is not None:
            if not key:
                raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header",
                                    headers={"WWW-Authenticate": "APIKey"})
            if not secrets.compare_digest(key.encode(), api_key.encode()):
                raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "APIKey"})
        if rate_limiter is not None:
            caller = f"key:{key}" if api_key is not None else f"client:{request.client.host if request.client else '?'}"
            wait = rate_limiter.take(caller)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                raise HTTPException(429, f"rate limit: {limits.rate_per_s:g} requests/s (burst {limits.burst}) "
                                         f"per API key; retry in {retry} s", headers={"Retry-After": str(retry)})

    def answer_agent() -> AnswerAgent:
        with agent_lock:
            if state["agent"] is None:
                try:
                    state["agent"] = AnswerAgent(index.retriever("hybrid" if index.dense else "bm25"), model,
                                                 mode=answer_mode, min_similarity=min_similarity,
                                                 style=answer_style, support=support)
                except Exception as exc:  # the model layer is optional for /search
                    log.exception("answer model unavailable")
                    raise HTTPException(503, f"answer model unavailable: {type(exc).__name__}: {exc}") from exc
            return state["agent"]

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = validation_message(list(exc.errors()))
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {detail}", "errors": errors})

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        m = index.manifest
        return HealthResponse(documents=len(index.store), modes=index.modes, auth=api_key is not None,
                              embedding_model=m.dense.embedding_model if m.dense else None,
                              index_created_at=m.created_at)

    @app.post("/search", response_model=SearchResponse, dependencies=[Depends(check_api_key)])
    def search(req: SearchRequest) -> SearchResponse:
        start = time.perf_counter()
        try:
            retriever = index.retriever(req.mode, fusion=req.fusion, dense_weight=req.dense_weight)
        except ValueError as exc:
            raise HTTPException(422, f"invalid request: mode: {exc}") from exc
        if req.boosts:
            hits = retriever.search(req.query, req.k, req.filters, boosts=req.boosts)
        else:
            hits = retriever.search(req.query, req.k, req.filters)
        return SearchResponse(query=req.query, mode=req.mode, k=req.k, hits=hits,
                              took_ms=(time.perf_counter() - start) * 1000)

    def count_refusal(response: AskResponse) -> None:
        if response.refused:
            refusals.inc()

    @app.post("/ask", response_model=AskResponse, dependencies=[Depends(check_api_key)],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "The answer; with `stream: true`, server-sent events"}})
    async def ask(req: AskRequest) -> Any:
        start = time.perf_counter()
        agent = answer_agent()
        if req.stream:
            return streamed_answer(agent, req, start, limits.request_timeout_s, count_refusal)
        try:
            answer = await agent.ask(req.question, k=req.k, filters=req.filters)
        except AnswerError as exc:
            raise HTTPException(502, str(exc)) from exc
        response = AskResponse(**answer.model_dump(), took_ms=(time.perf_counter() - start) * 1000)
        count_refusal(response)
        return response

    @app.get("/metrics", dependencies=[Depends(check_api_key)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from rag_runtime.pages.search_page import mount_search_page

    mount_search_page(app)  # the /ui page and the offline /docs
    app.state.index = index
    app.state.limits = limits
    _add_middleware(app, registry, limits, max_body_bytes, cors_origins)
    return app


def _add_middleware(app: FastAPI, registry: CollectorRegistry, limits: ServiceLimits, max_body_bytes: int,
                    cors_origins: list[str] | None) -> None:
    """The middleware stack, innermost first (the last added runs first on a request):
    concurrency limit -> timeout -> body limit -> CORS -> metrics (so 503/504/413 are counted)."""
    app.add_middleware(ConcurrencyLimit, max_concurrent=limits.max_concurrent_asks,
                       queue_timeout_s=limits.ask_queue_timeout_s, paths=limits.ask_paths)
    if limits.request_timeout_s is not None:
        app.add_middleware(RequestTimeout, timeout_s=limits.request_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", API_KEY_HEADER], allow_credentials=False, max_age=600)
    app.add_middleware(RequestMetrics, registry=registry)
