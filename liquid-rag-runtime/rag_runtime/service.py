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
* The index (documents, BM25, FAISS) and the query encoder are loaded when the app is created;
  the answer model is made on the first answer. A new version of the index folder is served
  without a restart (``index_reload``): the manifest watcher (``reload_interval_s``) or
  ``POST /admin/reload`` (only with an API key, and behind it) loads it, then swaps it in; every
  request keeps the version it started with; a version that fails to load is not served. No endpoint takes a path: the service
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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
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
    ReloadHealth,
    SearchRequest,
    SearchResponse,
    validation_message,
)
from rag_runtime.index import (
    DEFAULT_ALLOWED_EMBEDDING_MODELS,
    MANIFEST_FILE,
    RagIndex,
    locate_index,
)
from rag_runtime.index_reload import (
    CurrentPool,
    IndexReloader,
    IndexReloading,
    IndexVersion,
    ReloadingBackend,
    ReloadOutcome,
    manifest_signature,
    version_of,
)
from rag_runtime.mcp_server import build_mcp_server
from rag_runtime.openai_api import add_chat_api
from rag_runtime.query_batching import BatchingEncoder
from rag_runtime.service_auth import API_KEY_HEADER, AccessCheck, AccessDenied, KeyGuard
from rag_runtime.service_limits import AnswerSlots, ConcurrencyLimit, RequestTimeout, ServiceLimits
from rag_runtime.service_middleware import BodySizeLimit, RequestMetrics, error_body
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
    reload_interval_s: float = 0.0,
    reload_low_memory: bool = False,
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
    ``reload_interval_s``: poll ``index_dir``'s manifest that often and serve a new version when it
    changes (0: no watcher; ``serve`` defaults to 5 s); ``reload_low_memory``: drop the old version
    before loading the new one (503 meanwhile) instead of holding both (``index_reload``).
    """
    limits = limits or ServiceLimits()
    if index is None:
        if index_dir is None:
            raise ValueError("create_app needs index_dir or index")
        index = RagIndex.load(index_dir, allowed_embedding_models=allowed_embedding_models)
    if index_dir is not None:
        index_dir = locate_index(index_dir)  # an ETL run folder's index is <run>/index: watch its manifest
    elif index_dir is None:
        reload_interval_s = 0  # an index object has no folder to watch

    def make_pool(new: RagIndex) -> AgentPool:
        return AgentPool(new.retriever("hybrid" if new.dense else "bm25"), model, answer_mode=answer_mode,
                         answer_style=answer_style, allowed_modes=allowed_answer_modes,
                         allowed_styles=allowed_answer_styles, support=support, min_similarity=min_similarity)

    encoders: dict[str, Any] = {}  # query encoder by model, kept across versions (holds no index data)

    def serve_index(new: RagIndex) -> tuple[RagIndex, AgentPool]:
        """Ready a loaded index to serve: its query encoder (the earlier version's when the model is the
        same; batched when asked), warmed up now, not on the first request; its agent pool (a new
        ``LiquidModel`` per version when ``model`` is None: the weights are shared by the registry)."""
        if new.dense is not None:
            if new.dense.encoder_model in encoders:
                new.dense.encoder = encoders[new.dense.encoder_model]
            else:
                if batch_queries and not isinstance(new.dense.encoder, BatchingEncoder):
                    new.dense.encoder = BatchingEncoder(new.dense.encoder)
                encoders[new.dense.encoder_model] = new.dense.encoder
            new.dense.encode_queries(["warm-up"])
        return new, make_pool(new)

    registry = CollectorRegistry()
    reloader = IndexReloader(index_dir, index, serve_index, first_version=_first_version(index_dir),
                             registry=registry, low_memory=reload_low_memory,
                             load=lambda folder: RagIndex.load(folder, allowed_embedding_models=allowed_embedding_models))
    slots = AnswerSlots(limits.max_concurrent_asks, limits.ask_queue_timeout_s)
    access = AccessCheck(api_key, limits)
    mcp_app = None
    if mcp:
        server = build_mcp_server(ReloadingBackend(reloader), slots=slots, answer_timeout_s=limits.request_timeout_s)
        mcp_app = server.http_app(path=MCP_PATH, stateless_http=True, json_response=True, host_origin_protection=True,
                                  allowed_hosts=list(mcp_allowed_hosts) if mcp_allowed_hosts else None,
                                  allowed_origins=list(cors_origins or []))

    app = FastAPI(title="Liquid RAG runtime", version="0.1.0",
                  lifespan=_lifespan(mcp_app, reloader if index_dir is not None else None, reload_interval_s))
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

    @app.exception_handler(IndexReloading)
    async def _reloading(request: Request, exc: IndexReloading) -> JSONResponse:
        return JSONResponse(status_code=503, content=error_body(request.url.path, 503, str(exc)),
                            headers={"Retry-After": str(exc.retry_after_s)})

    @app.get("/health", response_model=HealthResponse, responses={503: {"description": "A low-memory reload is under way"}})
    def health() -> HealthResponse:
        served = reloader.current
        m = served.index.manifest
        return HealthResponse(documents=len(served.index.store), modes=served.index.modes, auth=api_key is not None,
                              embedding_model=m.dense.embedding_model if m.dense else None,
                              index_created_at=m.created_at, index_version=served.version.label,
                              reload=ReloadHealth(**reloader.health()))

    @app.post("/search", response_model=SearchResponse, dependencies=[Depends(check_api_key)])
    def search(req: SearchRequest) -> SearchResponse:
        start = time.perf_counter()
        index = reloader.current.index  # this request's version, to its end
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
            agent = reloader.current.pool.agent(req.answer_mode, req.answer_style)
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
    if api_key is not None:
        _add_admin_routes(app, reloader, check_api_key)
    add_chat_api(app, CurrentPool(reloader), access, limits, index.manifest.created_at)
    if mcp_app is not None:
        # a plain route (not a Mount): POST /mcp itself, no redirect to /mcp/; the key check wraps it
        app.router.routes.append(Route(MCP_PATH, KeyGuard(mcp_app, access, lambda _status, message: {"detail": message})))

    app.state.reloader = reloader  # reloader.current.index / .pool: the version served now
    app.state.limits = limits
    app.state.answer_slots = slots
    _add_middleware(app, registry, limits, slots, max_body_bytes, cors_origins)
    return app


def _first_version(index_dir: str | Path | None) -> IndexVersion:
    """The version of the index loaded at start (from its folder's manifest; none for an object)."""
    if index_dir is None:
        return IndexVersion(created_at="", digest="in-memory", signature=None)
    folder = Path(index_dir)
    signature = manifest_signature(folder)
    return version_of((folder / MANIFEST_FILE).read_bytes(), signature)


def _lifespan(mcp_app: Any, reloader: IndexReloader | None, interval_s: float):
    """The app's lifespan: the MCP app's (its session manager) and the index watcher."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if mcp_app is not None:
                await stack.enter_async_context(mcp_app.lifespan(app))
            watcher = None
            if reloader is not None and interval_s and interval_s > 0:
                reloader.interval_s = interval_s
                watcher = asyncio.create_task(_watch(reloader, interval_s), name="index-watcher")
            try:
                yield
            finally:
                if watcher is not None:
                    watcher.cancel()

    return lifespan


async def _watch(reloader: IndexReloader, interval_s: float) -> None:
    """Every ``interval_s``: reload when the index folder's manifest changed (in a thread: the
    event loop keeps serving while the new version loads)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(reloader.check)
        except Exception:  # check() reports load failures itself; this is a bug, keep watching
            log.exception("index watcher")


def _add_admin_routes(app: FastAPI, reloader: IndexReloader, check_api_key: Callable[..., None]) -> None:
    """``POST /admin/reload`` (only with an API key: an open server has no admin route)."""

    @app.post("/admin/reload", response_model=ReloadOutcome, dependencies=[Depends(check_api_key)],
              responses={409: {"model": ReloadOutcome, "description": "The new version could not be loaded; "
                                                                      "the previous one is still served"}})
    async def admin_reload() -> Any:
        """Load the index folder's current version and serve it; a failure keeps the old version (409)."""
        outcome = await asyncio.to_thread(reloader.reload)
        if outcome.status == "failed":
            return JSONResponse(status_code=409, content=outcome.model_dump(mode="json"))
        return outcome


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
