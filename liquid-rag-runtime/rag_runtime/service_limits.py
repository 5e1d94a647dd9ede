"""Limits of the HTTP service: concurrent answers, request time, request rate per API key.

* ``ConcurrencyLimit`` (ASGI): at most ``max_concurrent_asks`` requests to ``/ask`` and
  ``/v1/chat/completions`` (and any path under them, e.g. a streaming route) run at once; a
  request over that waits up to ``ask_queue_timeout_s`` for a slot, then gets **503** with
  ``Retry-After``. Each answer holds the model for seconds, so this is what keeps a burst from
  queueing without bound. The slots are an ``AnswerSlots``, which MCP's ``ask`` tool takes too.
* ``RequestTimeout`` (ASGI): a request whose response has not started after ``request_timeout_s``
  is cancelled (the model layer drops a cancelled request's row at its next decode step) and
  answered **504**.
* ``RateLimiter``: a token bucket per API key (per client address when auth is off):
  ``rate_per_s`` tokens a second, ``burst`` at most; a request without a token gets **429** with
  ``Retry-After``. Off unless ``rate_per_s`` is set. Checked after authentication, so a wrong key
  gets its 401 and cannot create buckets; at most ``MAX_BUCKETS`` buckets are kept (least recently
  used dropped).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict

from pydantic import BaseModel, ConfigDict, Field

from rag_runtime.service_middleware import send_error

MAX_BUCKETS = 10_000


class ServiceLimits(BaseModel):
    """The service's limits (``create_app(limits=...)``; ``serve`` options of the same names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent_asks: int = Field(4, ge=1, description="/ask requests answered at once.")
    ask_queue_timeout_s: float = Field(2.0, ge=0, description="How long an /ask over the limit waits for a slot before its 503.")
    request_timeout_s: float | None = Field(120.0, gt=0, description="Any request not answered by then gets a 504 (None: no limit).")
    rate_per_s: float | None = Field(None, gt=0, description="Token-bucket refill per API key, requests/s (None: no rate limit).")
    burst: int = Field(20, ge=1, description="Token-bucket size per API key.")
    ask_paths: tuple[str, ...] = Field(("/ask", "/v1/chat/completions"),
                                       description="Paths (and their sub-paths) under the /ask limit.")


def _matches(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


class AnswerSlots:
    """The answers that may run at once, shared by every surface that answers (``/ask``, the chat
    API through ``ConcurrencyLimit``, MCP's ``ask`` tool directly): ``acquire()`` waits up to
    ``queue_timeout_s`` for a slot and returns False when none freed up; ``release()`` gives it back."""

    def __init__(self, max_concurrent: int, queue_timeout_s: float):
        self.max_concurrent, self.queue_timeout_s = max_concurrent, queue_timeout_s
        self._slots: asyncio.Semaphore | None = None  # made on first use, inside the server's event loop
        self.in_flight = 0
        self.shed = 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.queue_timeout_s))

    @property
    def busy_message(self) -> str:
        return f"busy: {self.max_concurrent} answers already in progress; retry in {self.retry_after} s"

    async def acquire(self) -> bool:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        if not self._slots.locked():
            await self._slots.acquire()
        elif self.queue_timeout_s <= 0:
            self.shed += 1
            return False
        else:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.queue_timeout_s)
            except TimeoutError:
                self.shed += 1
                return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1
        self._slots.release()


class ConcurrencyLimit:
    """ASGI: bound the requests in flight on ``paths``; over it (after ``queue_timeout_s``), 503."""

    def __init__(self, app, max_concurrent: int = 4, queue_timeout_s: float = 2.0, paths: tuple[str, ...] = ("/ask",),
                 slots: AnswerSlots | None = None):
        self.app, self.paths = app, paths
        self.slots = slots or AnswerSlots(max_concurrent, queue_timeout_s)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _matches(scope["path"], self.paths):
            return await self.app(scope, receive, send)
        if not await self.slots.acquire():
            return await send_error(scope, send, 503, self.slots.busy_message,
                                    [(b"retry-after", str(self.slots.retry_after).encode())])
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


class RequestTimeout:
    """ASGI: cancel a request whose response has not started within ``timeout_s``; answer 504."""

    def __init__(self, app, timeout_s: float):
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.timeout_s)
            return
        except TimeoutError:
            if started:  # a streaming response under way: let it finish
                return await task
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await send_error(scope, send, 504, f"request timed out after {self.timeout_s:g} s")


class RateLimiter:
    """Token buckets keyed by API key (or client address): ``take(key)`` -> seconds to wait (0 = allowed)."""

    def __init__(self, rate_per_s: float, burst: int, max_buckets: int = MAX_BUCKETS, clock=time.monotonic):
        self.rate, self.burst, self.max_buckets, self.clock = rate_per_s, burst, max_buckets, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
            return wait
