"""Remote engines: a ``ModelSpec(backend="openai", base_url=...)`` served by vLLM, llama.cpp's
``llama-server`` or any OpenAI-compatible server, through pydantic-ai's own ``OpenAIChatModel`` and
``OpenAICompatibleProvider`` (not a hand-written HTTP client).

* ``RemoteEngine`` is what the registry holds for a remote spec: no weights, no budget; one
  ``AsyncOpenAI`` client (and chat model) per event loop, since an HTTP connection pool belongs to
  the loop that opened it, and a semaphore per loop bounding the requests in flight to
  ``spec.max_batch_size`` (the server's slots).
* Structured output is native: the server's ``json_schema`` response format, with our
  ``tighten_schema`` applied first (unbounded strings and lists get the spec's caps), and the
  token budget raised to what the tightened schema can need, as for the local backend. Tool calls
  use the server's tool-call support (``tools=`` in the request).
* Errors are one line naming the URL: connection refused, 401/403, 404 (no such model or path),
  timeouts. ``RemoteModelUnavailable`` (a ``ModelLoadError``) means the engine cannot serve the
  spec at all, so an ETL run stops instead of failing every document. HTTP 429 and 503 are retried
  with exponential backoff (``spec.max_retries``); nothing else is retried (the SDK's own retries are
  off).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import ModelRequestParameters, StreamedResponse
from pydantic_ai.settings import ModelSettings

from liquid_shared.models.errors import RemoteModelError, RemoteModelUnavailable
from liquid_shared.models.grammar import estimate_max_tokens, tighten_schema
from liquid_shared.models.spec import ModelSpec

RETRY_STATUS = frozenset({429, 503})


def _chat_model_class() -> type:
    """``OpenAIChatModel`` with our schema tightening (imported lazily: the ``openai`` extra)."""
    global _RemoteChatModel
    if _RemoteChatModel is not None:
        return _RemoteChatModel
    try:
        from pydantic_ai.models.openai import OpenAIChatModel
    except ImportError as exc:  # pragma: no cover - the extra is a dependency of liquid-shared-core
        raise RemoteModelUnavailable(
            "remote engines need pydantic-ai's openai extra: pip install 'pydantic-ai-slim[openai]'"
        ) from exc

    class RemoteChatModel(OpenAIChatModel):
        """pydantic-ai's chat model; output and tool schemas are tightened after its own transform."""

        liquid_spec: ModelSpec

        def customize_request_parameters(self, params: ModelRequestParameters) -> ModelRequestParameters:
            params = super().customize_request_parameters(params)
            spec = self.liquid_spec
            caps = (spec.default_max_string_chars, spec.default_max_items)
            if params.output_object is not None:
                params = replace(params, output_object=replace(
                    params.output_object, json_schema=tighten_schema(params.output_object.json_schema, *caps)))
            if params.function_tools:
                params = replace(params, function_tools=[
                    replace(t, parameters_json_schema=tighten_schema(t.parameters_json_schema, *caps))
                    for t in params.function_tools])
            return params

    _RemoteChatModel = RemoteChatModel
    return RemoteChatModel


_RemoteChatModel: type | None = None


class RemoteEngine:
    """A remote OpenAI-compatible engine serving one ``ModelSpec`` (held by the registry)."""

    weight_bytes = 0  # nothing in this process's memory: the budget does not count it

    def __init__(self, spec: ModelSpec):
        if not spec.base_url:
            raise RemoteModelUnavailable(f"remote model {spec.model!r} has no base_url")
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.api_key = None
        if spec.api_key_env:
            self.api_key = os.environ.get(spec.api_key_env)
            if not self.api_key:
                raise RemoteModelUnavailable(
                    f"remote model {spec.model!r} at {self.base_url}: environment variable {spec.api_key_env} "
                    "(ModelSpec.api_key_env) is not set"
                )
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.closed = False
        self.requests = 0
        self.retries = 0

    def __repr__(self) -> str:
        return f"RemoteEngine({self.spec.model!r} at {self.base_url})"

    # ------------------------------------------------------------- clients
    def _state(self) -> tuple[Any, asyncio.Semaphore]:
        """The chat model and the in-flight semaphore of the running event loop."""
        if self.closed:
            raise RemoteModelError(f"remote model {self.spec.model!r} at {self.base_url} was unloaded")
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            from openai import AsyncOpenAI
            from pydantic_ai.profiles.openai import OpenAIModelProfile
            from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

            client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "no-key",
                                 timeout=self.spec.request_timeout_s, max_retries=0)
            provider = OpenAICompatibleProvider(
                "liquid-remote", openai_client=client,
                # What vLLM and llama-server support: json_schema response formats (guided
                # decoding, so the schema also goes into the instructions) and tool calls.
                profile=OpenAIModelProfile(
                    supports_tools=True, supports_json_schema_output=True, supports_json_object_output=True,
                    default_structured_output_mode="native", native_output_requires_schema_in_instructions=True,
                    openai_chat_supports_multiple_system_messages=False, supports_tool_return_schema=False,
                ),
            )
            chat = _chat_model_class()(self.spec.model, provider=provider)
            chat.liquid_spec = self.spec
            state = self._per_loop[loop] = (chat, asyncio.Semaphore(self.spec.batch_limit))
        return state

    def _settings(self, settings: ModelSettings | None, params: ModelRequestParameters,
                  messages: list[ModelMessage]) -> ModelSettings:
        """The spec's sampling defaults under the caller's settings; a token budget that fits the
        tightened output schema; the spec's tool policy as ``tool_choice`` (a call first when
        ``require_tool_first``, no more calls after ``max_tool_rounds``) unless the caller set one."""
        from liquid_shared.models.pydantic_model import tool_rounds_this_turn

        spec = self.spec
        out: dict[str, Any] = dict(settings or {})
        if params.function_tools and out.get("tool_choice") is None:
            rounds = tool_rounds_this_turn(messages)
            if rounds >= spec.max_tool_rounds:
                out["tool_choice"] = "none"
            elif rounds == 0 and spec.require_tool_first:
                out["tool_choice"] = "required"
        out.setdefault("temperature", spec.temperature)
        if spec.seed is not None:
            out.setdefault("seed", spec.seed)
        budget = int(out.get("max_tokens") or spec.max_new_tokens)
        if params.output_object is not None:
            schema = tighten_schema(params.output_object.json_schema, spec.default_max_string_chars, spec.default_max_items)
            budget = max(budget, estimate_max_tokens(schema))
        out["max_tokens"] = budget
        # min-p and the repetition penalty are not OpenAI fields: vLLM reads min_p and
        # repetition_penalty, llama-server min_p and repeat_penalty; unknown fields are ignored.
        extra = {"min_p": spec.min_p, "repetition_penalty": spec.repetition_penalty,
                 "repeat_penalty": spec.repetition_penalty}
        out["extra_body"] = {**extra, **dict(out.get("extra_body") or {})}
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------ requests
    async def request(self, messages: list[ModelMessage], settings: ModelSettings | None,
                      params: ModelRequestParameters) -> ModelResponse:
        chat, slots = self._state()
        settings = self._settings(settings, params, messages)
        async with slots:
            for attempt in range(self.spec.max_retries + 1):
                try:
                    self.requests += 1
                    return await chat.request(messages, settings, params)
                except ModelAPIError as exc:
                    if not self._should_retry(exc, attempt):
                        raise self.error(exc) from None
                await self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], settings: ModelSettings | None,
                             params: ModelRequestParameters, run_context: Any = None) -> AsyncIterator[StreamedResponse]:
        chat, slots = self._state()
        settings = self._settings(settings, params, messages)
        async with slots:
            for attempt in range(self.spec.max_retries + 1):
                try:
                    self.requests += 1
                    stream_cm = chat.request_stream(messages, settings, params, run_context)
                    stream = await stream_cm.__aenter__()
                except ModelAPIError as exc:
                    if not self._should_retry(exc, attempt):
                        raise self.error(exc) from None
                    await self._backoff(attempt)
                    continue
                try:
                    yield stream
                except ModelAPIError as exc:
                    await stream_cm.__aexit__(type(exc), exc, exc.__traceback__)
                    raise self.error(exc) from None
                except BaseException as exc:
                    if not await stream_cm.__aexit__(type(exc), exc, exc.__traceback__):
                        raise
                else:
                    await stream_cm.__aexit__(None, None, None)
                return

    def _should_retry(self, exc: ModelAPIError, attempt: int) -> bool:
        return (isinstance(exc, ModelHTTPError) and exc.status_code in RETRY_STATUS
                and attempt < self.spec.max_retries)

    async def _backoff(self, attempt: int) -> None:
        self.retries += 1
        await asyncio.sleep(min(0.25 * 2**attempt, 8.0))

    def error(self, exc: ModelAPIError) -> RemoteModelError:
        """One line that names the spec, the URL and what went wrong."""
        where = f"remote model {self.spec.model!r} at {self.base_url}"
        status = getattr(exc, "status_code", None)
        detail = _first_line(getattr(exc, "body", None) or getattr(exc, "message", None) or str(exc))
        if status in (401, 403):
            key = f"check {self.spec.api_key_env}" if self.spec.api_key_env else "set ModelSpec.api_key_env"
            return RemoteModelUnavailable(f"{where}: HTTP {status}, the server rejected the API key ({key})")
        if status == 404:
            return RemoteModelUnavailable(
                f"{where}: HTTP 404, no such model or endpoint (check ModelSpec.model against {self.base_url}/models "
                "and that base_url ends in /v1)")
        if status in RETRY_STATUS:
            return RemoteModelError(f"{where}: HTTP {status} after {self.spec.max_retries} retries ({detail})")
        if status is not None:
            return RemoteModelError(f"{where}: HTTP {status}: {detail}")
        name = type(exc).__name__
        if "Timeout" in name:
            return RemoteModelError(f"{where}: no answer within {self.spec.request_timeout_s:g} s (request_timeout_s)")
        return RemoteModelUnavailable(f"{where}: cannot connect ({detail}); is the server running?")

    def close(self) -> None:
        self.closed = True
        self._per_loop = weakref.WeakKeyDictionary()


def _first_line(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text[:200]
