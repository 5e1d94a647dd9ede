"""Errors in the shape of OpenAI's API, for the chat API under ``/v1``.

``{"error": {"message", "type", "param", "code"}}``: the openai SDK raises the exception class of
the status (``AuthenticationError`` for 401, ``RateLimitError`` for 429...) with ``message``.
The service's middleware (body limit, concurrency limit, timeout) answers paths under ``/v1/``
in this shape too (``is_openai_path``).
"""

from __future__ import annotations

OPENAI_PREFIX = "/v1/"

# status -> (type, code) when the raiser gives none
_DEFAULTS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "model_error"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str | None = None) -> dict:
    """The error body for ``status``."""
    default_type, default_code = _DEFAULTS.get(status, ("invalid_request_error" if status < 500 else "server_error", None))
    return {"error": {"message": message, "type": type_ or default_type, "param": param, "code": code or default_code}}


class ChatAPIError(Exception):
    """An error the chat API answers with ``openai_error`` (raised in its handlers)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return openai_error(self.status, self.message, param=self.param, code=self.code)
