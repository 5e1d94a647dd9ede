"""The HTTP service over one index folder: ``/search``, ``/ask``, ``/health``, ``/metrics``, the MCP
server at ``/mcp`` (streamable HTTP, ``mcp_server``) and an OpenAI-compatible chat API under ``/v1``
(``openai_api``).

* Bad requests get a 4xx with a message naming the field and the problem: 422 for invalid bodies
  (bounds on ``k`` and query length, wrong types, unknown fields), 413 for bodies over
  ``max_body_bytes``, 401 for a missing or wrong API key. A 500 means a bug. Under ``/v1`` the
  errors are OpenAI's error JSON (400 for invalid bodies).
* With ``api_key`` set (or ``RAG_API_KEY`` for ``serve``), every endpoint but ``/health`` needs the
  key, as ``X-API-Key`` or ``Authorization: Bearer`` (``service_auth``); ``/mcp`` too, through an
  ASGI guard around the mounted app.
* The index (documents, BM25, FAISS) and the query encoder are loaded once, when the app is
  created; the answer model is made on the first answer. No endpoint takes a path: the service
  reads no file but those of its index folder, and loads an embedding model only from inside it or
  from ``allowed_embedding_models`` (``index.confine_embedding_model``).
* Answers are chosen per request (``answer_mode``, ``answer_style`` on ``/ask``, MCP ``ask`` and the
  chat API) within ``allowed_answer_modes``/``allowed_answer_styles`` (``agent_pool``).
* ``/ask`` with ``"stream": true`` answers as server-sent events (``service_stream``): the retrieved
  chunks, text deltas while the model decodes, then the same JSON as the plain response.
* Limits (``ServiceLimits``, ``service_limits``): concurrent answers (``/ask``, ``/v1/chat/completions``
  and MCP ``ask`` share the slots; 503 + Retry-After over it), a per-request timeout (504), a token
  bucket per API key (429 + Retry-After, off by default; every ``/mcp`` HTTP request takes a token).
* CORS: none unless ``cors_origins`` lists the allowed origins (then GET/POST with the
  ``Content-Type`` and ``X-API-Key`` headers, no credentials). ``/mcp`` validates Host (loopback
  names, the bind address and ``mcp_allowed_hosts``: else 421) and Origin (same origin, loopback
  or ``cors_origins``: else 403), as the MCP specification asks of HTTP servers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.routing import Route

from liquid_shared.models.errors import ModelLoadError
from rag_runtime.agent_pool import AgentPool, AnswerChoiceError, AnswerUnavailable
from rag_runtime.answer import (
    DEFAULT_MIN_SIMILARITY,
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
    validation_message,
)
from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS, RagIndex
from rag_runtime.mcp_server import Backend, build_mcp_server
from rag_runtime.openai_api import add_chat_api
from rag_runtime.query_batching import BatchingEncoder
from rag_runtime.service_auth import API_KEY_HEADER, AccessCheck, AccessDenied, KeyGuard
from rag_runtime.service_limits import AnswerSlots, ConcurrencyLimit, RequestTimeout, ServiceLimits
from rag_runtime.service_middleware import BodySizeLimit, RequestMetrics
from rag_runtime.service_stream import streamed_answer

log = logging.getLogger("rag_runtime.service")
MCP_PATH = "/mcp"
__all__ = ["API_KEY_HEADER", "create_app", "validation_message"]


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
    allowed_answer_modes: Sequence[str] | None = None,
    allowed_answer_styles: Sequence[str] | None = None,
    mcp: bool = True,
    mcp_allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """Build the app over ``index_dir`` (or an already loaded ``index``).

    ``model`` is the pydantic-ai model for ``/ask`` (default: the stack's ``answer`` stage model);
    ``answer_style`` and ``support`` are ``AnswerAgent``'s ``style`` and ``support``.
    ``batch_queries`` encodes the queries of concurrent requests together (``BatchingEncoder``): less
    CPU per request with one torch thread, more with torch's default two (see docs/benchmarks.md).
    ``limits``: ``ServiceLimits()`` when not given. ``cors_origins``: no CORS headers when None.
    ``allowed_embedding_models``: embedding models the index may name besides folders inside it.
    ``answer_mode``/``answer_style`` are the defaults of a request that sets none;
    ``allowed_answer_modes``/``allowed_answer_styles`` what a request may choose (default: all).
    ``mcp``: mount the MCP server at ``/mcp``; ``mcp_allowed_hosts``: Host names it accepts besides
    the loopback names and the address the server is bound to (e.g. the name behind a proxy).
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

    pool = AgentPool(index.retriever("hybrid" if index.dense else "bm25"), model, answer_mode=answer_mode,
                     answer_style=answer_style, allowed_modes=allowed_answer_modes, allowed_styles=allowed_answer_styles,
                     support=support, min_similarity=min_similarity)
    slots = AnswerSlots(limits.max_concurrent_asks, limits.ask_queue_timeout_s)
    access = AccessCheck(api_key, limits)
    mcp_app = None
    if mcp:
        server = build_mcp_server(Backend(index=index, pool=pool), slots=slots, answer_timeout_s=limits.request_timeout_s)
        mcp_app = server.http_app(path=MCP_PATH, stateless_http=True, json_response=True, host_origin_protection=True,
                                  allowed_hosts=list(mcp_allowed_hosts) if mcp_allowed_hosts else None,
                                  allowed_origins=list(cors_origins or []))

    app = FastAPI(title="Liquid RAG runtime", version="0.1.0", lifespan=mcp_app.lifespan if mcp_app else None)
    registry = CollectorRegistry()
    Gauge("rag_index_documents", "Documents in the served index", registry=registry).set(len(index.store))
    refusals = Counter("rag_ask_refusals", "Answers refused for lack of relevant chunks", registry=registry)

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    # the two header schemes are declared for the OpenAPI docs; AccessCheck reads the headers itself
    def check_api_key(request: Request, _key: str | None = Depends(key_header),
                      _bearer: Any = Depends(bearer)) -> None:  # noqa: B008
        """Authenticate (401), then take a token from the caller's bucket (429) (``AccessCheck``)."""
        try:
            access.check(request.headers, request.client.host if request.client else None)
        except AccessDenied as exc:
            raise HTTPException(exc.status, exc.message, headers=exc.headers) from exc

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
        try:
            agent = pool.agent(req.answer_mode, req.answer_style)
        except AnswerChoiceError as exc:
            raise HTTPException(422, f"invalid request: {exc}") from exc
        except AnswerUnavailable as exc:
            log.exception("answer model unavailable")
            raise HTTPException(503, str(exc)) from exc
        if req.stream:
            return streamed_answer(agent, req, start, limits.request_timeout_s, count_refusal)
        try:
            answer = await agent.ask(req.question, k=req.k, filters=req.filters)
        except AnswerError as exc:
            raise HTTPException(502, str(exc)) from exc
        except ModelLoadError as exc:
            raise HTTPException(503, f"answer model unavailable: {exc}") from exc
        response = AskResponse(**answer.model_dump(), took_ms=(time.perf_counter() - start) * 1000)
        count_refusal(response)
        return response

    @app.get("/metrics", dependencies=[Depends(check_api_key)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from rag_runtime.pages.search_page import mount_search_page

    mount_search_page(app)  # the /ui page and the offline /docs
    add_chat_api(app, pool, access, limits, index.manifest.created_at)
    if mcp_app is not None:
        # a plain route (not a Mount): POST /mcp itself, no redirect to /mcp/; the key check wraps it
        app.router.routes.append(Route(MCP_PATH, KeyGuard(mcp_app, access, lambda _status, message: {"detail": message})))

    app.state.index = index
    app.state.limits = limits
    app.state.answer_slots = slots
    app.state.agent_pool = pool
    _add_middleware(app, registry, limits, slots, max_body_bytes, cors_origins)
    return app


def _add_middleware(app: FastAPI, registry: CollectorRegistry, limits: ServiceLimits, slots: AnswerSlots,
                    max_body_bytes: int, cors_origins: list[str] | None) -> None:
    """The middleware stack, innermost first (the last added runs first on a request):
    concurrency limit -> timeout -> body limit -> CORS -> metrics (so 503/504/413 are counted)."""
    app.add_middleware(ConcurrencyLimit, paths=limits.ask_paths, slots=slots)
    if limits.request_timeout_s is not None:
        app.add_middleware(RequestTimeout, timeout_s=limits.request_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", API_KEY_HEADER, "Authorization"], allow_credentials=False,
                           max_age=600)
    app.add_middleware(RequestMetrics, registry=registry)
