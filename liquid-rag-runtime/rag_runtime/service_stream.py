"""``POST /ask`` with ``"stream": true``: the answer as server-sent events (``text/event-stream``).

Events, in this order (each ``data`` is one line of JSON):

* ``context``: ``{"question", "hits": [...]}``, the chunks that cleared the relevance bar, sent
  before the model starts (empty for a question that will be refused);
* ``delta``: ``{"text"}``, a piece of the answer text while the model decodes;
* ``reset``: ``{"reason"}``, the model is asked again (its draft failed validation): drop the text
  received so far; deltas of the new draft follow;
* ``answer``: the validated answer, the same JSON as the non-streaming response (``AskResponse``);
  the stream ends after it;
* ``error``: ``{"status", "detail"}`` instead of ``answer`` when the answer fails once the stream has
  started: 502 (the model could not answer), 504 (``request_timeout_s`` passed), 500 (a bug).

Errors before the stream starts (422, 401, 429, 503) are ordinary JSON responses. The service's
limits apply: the concurrency slot is held until the stream ends, and the request timeout counts
from the start of the request to the ``answer`` event (the timeout middleware cannot answer 504
once a response has started, so the stream enforces it itself and ends with an ``error``).
A client that disconnects cancels the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from rag_runtime.answer import AnswerAgent, AnswerError
from rag_runtime.answer_events import AnswerDelta, AnswerDone, AnswerReset, Retrieved
from rag_runtime.api_models import AskRequest, AskResponse

log = logging.getLogger("rag_runtime.service")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: Any) -> str:
    """One server-sent event (JSON data on a single line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def answer_events(agent: AnswerAgent, req: AskRequest, start: float, timeout_s: float | None,
                        on_answer: Callable[[AskResponse], None]) -> AsyncIterator[str]:
    """The SSE text of one streamed answer; ``start`` is the request's ``perf_counter`` time."""
    events = agent.ask_stream(req.question, k=req.k, filters=req.filters)
    deadline = None if timeout_s is None else start + timeout_s
    try:
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                event = await asyncio.wait_for(anext(events), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield sse("error", {"status": 504, "detail": f"request timed out after {timeout_s:g} s"})
                return
            except AnswerError as exc:
                yield sse("error", {"status": 502, "detail": str(exc)})
                return
            except Exception as exc:
                log.exception("streamed answer failed")
                yield sse("error", {"status": 500, "detail": f"internal error: {type(exc).__name__}"})
                return
            if isinstance(event, Retrieved):
                yield sse("context", {"question": event.question,
                                      "hits": [h.model_dump(mode="json") for h in event.hits]})
            elif isinstance(event, AnswerDelta):
                yield sse("delta", {"text": event.text})
            elif isinstance(event, AnswerReset):
                yield sse("reset", {"reason": event.reason})
            elif isinstance(event, AnswerDone):
                response = AskResponse(**event.answer.model_dump(), took_ms=(time.perf_counter() - start) * 1000)
                on_answer(response)
                yield sse("answer", response.model_dump(mode="json"))
                return
    finally:
        await events.aclose()


def streamed_answer(agent: AnswerAgent, req: AskRequest, start: float, timeout_s: float | None,
                    on_answer: Callable[[AskResponse], None]) -> StreamingResponse:
    return StreamingResponse(answer_events(agent, req, start, timeout_s, on_answer),
                             media_type="text/event-stream", headers=SSE_HEADERS)
