"""Who may call the service: the API key check and the per-key rate limit, in one place.

Every protected surface runs the same ``AccessCheck``: the named routes (``/search``, ``/ask``,
``/metrics``) through a FastAPI dependency, the chat API (``/v1/...``) in its handlers, and the
mounted MCP app (``/mcp``) through ``KeyGuard``, an ASGI wrapper, so a mounted app cannot slip
past the check.

* The key may come as ``X-API-Key: KEY`` or as ``Authorization: Bearer KEY`` (what the openai SDK
  and MCP clients send); a request that sends both must send the same key in both.
* Authentication first (**401**), then one token from the caller's bucket (**429** with
  ``Retry-After``), so a wrong key cannot create buckets. Without a key the bucket is per client
  address.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from rag_runtime.service_limits import RateLimiter, ServiceLimits
from rag_runtime.service_middleware import send_json

API_KEY_HEADER = "X-API-Key"


class AccessDenied(Exception):
    """A request that may not go on: ``status`` 401 or 429, a one-line ``message``, response headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents (``X-API-Key`` or a Bearer token), or None."""
    key = headers.get(API_KEY_HEADER.lower()) or headers.get(API_KEY_HEADER)
    auth = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    if key and bearer and key != bearer:
        raise AccessDenied(401, "the X-API-Key header and the Bearer token disagree; send one key",
                           {"WWW-Authenticate": "Bearer"})
    return key or bearer


class AccessCheck:
    """``check(headers, client)``: authenticate, then rate-limit; raises ``AccessDenied``."""

    def __init__(self, api_key: str | None, limits: ServiceLimits):
        self.api_key, self.limits = api_key, limits
        self.rate_limiter = RateLimiter(limits.rate_per_s, limits.burst) if limits.rate_per_s else None

    def check(self, headers: Mapping[str, str], client: str | None) -> None:
        key = presented_key(headers)
        if self.api_key is not None:
            if not key:
                raise AccessDenied(401, f"missing API key: send it in the {API_KEY_HEADER} header "
                                        "or as 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"})
            if not secrets.compare_digest(key.encode(), self.api_key.encode()):
                raise AccessDenied(401, "invalid API key", {"WWW-Authenticate": "Bearer"})
        if self.rate_limiter is not None:
            caller = f"key:{key}" if self.api_key is not None else f"client:{client or '?'}"
            wait = self.rate_limiter.take(caller)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                raise AccessDenied(429, f"rate limit: {self.limits.rate_per_s:g} requests/s (burst "
                                        f"{self.limits.burst}) per API key; retry in {retry} s",
                                   {"Retry-After": str(retry)})


def _headers_of(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class KeyGuard:
    """ASGI: run ``access`` on every HTTP request before ``app``; refusals as ``error_body`` JSON."""

    def __init__(self, app, access: AccessCheck, error_body: Callable[[int, str], dict]):
        self.app, self.access, self.error_body = app, access, error_body

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            client = scope.get("client")
            try:
                self.access.check(_headers_of(scope), client[0] if client else None)
            except AccessDenied as exc:
                extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
                return await send_json(send, exc.status, self.error_body(exc.status, exc.message), extra)
        await self.app(scope, receive, send)
