"""ASGI middleware of the HTTP service: a request body size limit, and Prometheus request metrics
(the load limits are in ``service_limits``).

Both are plain ASGI (no ``BaseHTTPMiddleware``), so they add little per request and never buffer
a body.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from rag_runtime.openai_errors import is_openai_path, openai_error

KNOWN_PATHS = ("/search", "/ask", "/health", "/metrics", "/mcp", "/v1/models", "/v1/chat/completions")
HISTORY_HINT = " (for the chat API the whole conversation counts: send fewer or shorter earlier messages)"


class _BodyTooLarge(Exception):
    pass


async def send_json(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send a whole JSON response from ASGI middleware (``headers``: extra raw header pairs)."""
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def error_body(path: str, status: int, message: str) -> dict:
    """An error response body: OpenAI's shape under ``/v1/``, else ``{"detail": message}``."""
    return openai_error(status, message) if is_openai_path(path) else {"detail": message}


async def send_error(scope, send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send an error response from ASGI middleware, in the shape the request's path expects."""
    await send_json(send, status, error_body(scope.get("path", ""), status, message), headers)


class BodySizeLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes`` (by Content-Length, or while streaming)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: str) -> str:
        return f"request body too large: {size}; the limit is {self.max_bytes} bytes"

    async def _too_large(self, scope, send, size: str) -> None:
        hint = HISTORY_HINT if is_openai_path(scope.get("path", "")) else ""
        await send_error(scope, send, 413, self._message(size) + hint)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await send_error(scope, send, 400, f"invalid Content-Length header {length[:40]!r}")
            if int(length) > self.max_bytes:
                return await self._too_large(scope, send, f"{int(length)} bytes")

        received = 0
        too_large = False  # FastAPI turns errors raised while reading a body into a 400; we answer 413
        replaced = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def checked_send(message):
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await self._too_large(scope, send, f"more than {self.max_bytes} bytes (streamed)")
                return  # drop the app's own response to the failed read
            await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except _BodyTooLarge:
            if not replaced:
                replaced = True
                await self._too_large(scope, send, f"more than {self.max_bytes} bytes (streamed)")


class RequestMetrics:
    """Count requests by endpoint and status and time them, into a per-app Prometheus registry."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("rag_requests", "HTTP requests handled", ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "rag_request_seconds", "HTTP request latency (seconds)", ["endpoint"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "/mcp" if path.startswith("/mcp/") else "other"
        status = 500
        start = time.perf_counter()

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.requests.labels(endpoint, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - start)
