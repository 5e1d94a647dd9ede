"""An OpenAI-compatible chat API over the index: ``GET /v1/models``, ``POST /v1/chat/completions``.

The last user message is the question; the earlier user turns are its conversation, read by
retrieval (``conversation``), so "and when was it built?" finds the chunks of the question before
it. The answer is the same as ``/ask``'s (``AnswerAgent`` from the ``AgentPool``); its citations
are ``[1]``-style markers at the end of the text, and, machine-readable, the extra fields
``citations`` (``[{index, id, title, source, text}]``) and ``rag`` (``{answer, refused, reason,
support, answer_mode, answer_style}``) of the completion (and of the last chunk of a stream).

``stream: true`` answers as OpenAI's server-sent chunks (``chat.completion.chunk``): a first chunk
with the role, content deltas while the model decodes, a last chunk with ``finish_reason: "stop"``
and the extra fields, then ``data: [DONE]``. Should the model's streamed draft be rejected (a
retried draft, or a strict support check refusing it), the text that follows starts with a blank
line and "Revised answer:", and ``rag.answer`` holds the final answer. An error after the stream
started comes as a chunk ``{"error": {...}}`` (502 the model failed, 504 the request timeout).

Access and limits are the service's: the API key as ``Authorization: Bearer KEY`` (or
``X-API-Key``), the rate limit per key, the answer slots (``/v1/chat/completions`` is an answer
path of ``ConcurrencyLimit``), the body cap (its 413 says the conversation counts), the request
timeout. Every error is OpenAI's error JSON (``openai_errors``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from liquid_shared.models.errors import ModelLoadError
from rag_runtime.agent_pool import AgentPool, AnswerChoiceError, AnswerUnavailable
from rag_runtime.answer import AnswerAgent, AnswerError
from rag_runtime.answer_events import AnswerDelta, AnswerDone, AnswerReset
from rag_runtime.openai_errors import ChatAPIError, openai_error
from rag_runtime.openai_models import (
    ChatRequest,
    chunk_body,
    citations_field,
    completion_body,
    markers,
    models_body,
    parse_chat_request,
    rag_field,
)
from rag_runtime.service_auth import AccessCheck, AccessDenied
from rag_runtime.service_limits import ServiceLimits

log = logging.getLogger("rag_runtime.service")
REVISED = "Revised answer: "
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _data(payload: dict | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n"


def _created(timestamp: str) -> int:
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except ValueError:
        return 0


def add_chat_api(app: FastAPI, pool: AgentPool, access: AccessCheck, limits: ServiceLimits, index_created_at: str) -> None:
    """Add the ``/v1`` routes and the handler that answers ``ChatAPIError`` in OpenAI's shape."""

    async def chat_error(_: Request, exc: ChatAPIError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=exc.headers)

    app.add_exception_handler(ChatAPIError, chat_error)
    app.include_router(chat_router(pool, access, limits, _created(index_created_at)))


def chat_router(pool: AgentPool, access: AccessCheck, limits: ServiceLimits, created: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["chat API (OpenAI-compatible)"])

    def authorise(request: Request) -> None:
        try:
            access.check(request.headers, request.client.host if request.client else None)
        except AccessDenied as exc:
            code = "invalid_api_key" if exc.status == 401 else None
            raise ChatAPIError(exc.status, exc.message, code=code, headers=exc.headers) from exc

    @router.get("/models")
    def models(request: Request) -> dict:
        authorise(request)
        return models_body(pool.allowed_styles, created)

    @router.post("/chat/completions", responses={200: {"content": {"text/event-stream": {}}}})
    async def chat_completions(request: Request):
        start = time.perf_counter()
        authorise(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ChatAPIError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from exc
        req = parse_chat_request(body)
        try:
            agent = pool.agent(req.answer_mode, req.answer_style, earlier=req.earlier)
        except AnswerChoiceError as exc:
            raise ChatAPIError(400, str(exc), param="answer_style" if "style" in str(exc) else "answer_mode",
                               code="invalid_value") from exc
        except AnswerUnavailable as exc:
            raise ChatAPIError(503, str(exc), code="model_unavailable") from exc
        completion_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            return StreamingResponse(_stream(agent, req, completion_id, now, start, limits.request_timeout_s),
                                     media_type="text/event-stream", headers=SSE_HEADERS)
        try:
            answer = await agent.ask(req.question, k=req.k, filters=req.filters)
        except AnswerError as exc:
            raise ChatAPIError(502, str(exc), code="model_error") from exc
        except ModelLoadError as exc:
            raise ChatAPIError(503, f"answer model unavailable: {exc}", code="model_unavailable") from exc
        except Exception as exc:
            log.exception("chat completion failed")
            raise ChatAPIError(500, f"internal error: {type(exc).__name__}") from exc
        return completion_body(answer, req.model, completion_id, now)

    return router


async def _stream(agent: AnswerAgent, req: ChatRequest, completion_id: str, created: int, start: float,
                  timeout_s: float | None) -> AsyncIterator[str]:
    """The SSE text of a streamed completion (see the module docstring)."""
    events = agent.ask_stream(req.question, k=req.k, filters=req.filters)
    deadline = None if timeout_s is None else start + timeout_s
    sent, revised = "", False
    yield _data(chunk_body(completion_id, created, req.model, {"role": "assistant", "content": ""}))
    try:
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                event = await asyncio.wait_for(anext(events), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield _data(openai_error(504, f"request timed out after {timeout_s:g} s"))
                return
            except AnswerError as exc:
                yield _data(openai_error(502, str(exc), code="model_error"))
                return
            except ModelLoadError as exc:
                yield _data(openai_error(503, f"answer model unavailable: {exc}", code="model_unavailable"))
                return
            except Exception as exc:
                log.exception("streamed chat completion failed")
                yield _data(openai_error(500, f"internal error: {type(exc).__name__}"))
                return
            if isinstance(event, AnswerDelta) and not revised:
                sent += event.text
                yield _data(chunk_body(completion_id, created, req.model, {"content": event.text}))
            elif isinstance(event, AnswerReset) and sent:
                revised = True
            elif isinstance(event, AnswerDone):
                answer = event.answer
                if not revised and answer.answer.startswith(sent):
                    tail = answer.answer[len(sent):]
                elif not revised and sent.rstrip() == answer.answer:
                    tail = ""
                else:
                    tail = f"\n\n{REVISED}{answer.answer}"
                tail += markers(answer)
                if tail:
                    yield _data(chunk_body(completion_id, created, req.model, {"content": tail}))
                yield _data(chunk_body(completion_id, created, req.model, {}, "stop",
                                       citations=citations_field(answer), rag=rag_field(answer)))
                yield _data("[DONE]")
                return
    finally:
        await events.aclose()
