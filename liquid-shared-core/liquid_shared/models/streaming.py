"""Streaming for the local backend: text deltas as a row decodes, the final parts validated.

The decode loop calls the row's ``on_token`` in its worker thread; the tokens cross to the event
loop through a queue and are decoded incrementally (a delta is emitted only once its bytes form
whole characters). Text and native structured output stream as text deltas (pydantic-ai validates
the partial and the final JSON); a tool-mode step (our JSON convention) is only known to be a tool
call or a final answer once it is complete, so it is emitted whole at the end. With stop sequences
the text is emitted at the end too (a delta could hold the start of a stop sequence).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.messages import ModelResponse, ModelResponseStreamEvent, TextPart, ToolCallPart
from pydantic_ai.models import StreamedResponse
from pydantic_ai.usage import RequestUsage


@dataclass
class LocalStreamedResponse(StreamedResponse):
    """A streamed response from the local batcher (``LiquidModel.request_stream``)."""

    _model_name: str = ""
    _tokens: asyncio.Queue = field(default_factory=asyncio.Queue)
    _task: asyncio.Task | None = None
    _decode: Callable[[list[int]], str] = lambda ids: ""
    _parse: Callable[[str], list[Any]] = lambda text: [TextPart(content=text)]
    _incremental: bool = True
    _escape: Callable[[str], str] = lambda text: text
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        assert self._task is not None
        ids: list[int] = []
        sent = ""
        while True:
            getter = asyncio.ensure_future(self._tokens.get())
            done, _ = await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            ids.append(getter.result())
            while not self._tokens.empty():
                ids.append(self._tokens.get_nowait())
            if not self._incremental:
                continue
            text = self._escape(self._decode(ids).lstrip())
            if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
                continue
            if text.startswith(sent) and len(text) > len(sent):
                for event in self._parts_manager.handle_text_delta(vendor_part_id=0, content=text[len(sent):]):
                    yield event
                sent = text
        result = await self._task  # raises the request's own error
        self._usage = RequestUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
        self.finish_reason = "stop" if result.complete else "length"
        parts = self._parse(result.text)
        if self._incremental and len(parts) == 1 and isinstance(parts[0], TextPart) and parts[0].content.startswith(sent):
            rest = parts[0].content[len(sent):]
            if rest or not sent:
                for event in self._parts_manager.handle_text_delta(vendor_part_id=0, content=rest):
                    yield event
            return
        for i, part in enumerate(parts):
            if isinstance(part, ToolCallPart):
                yield self._parts_manager.handle_tool_call_part(
                    vendor_part_id=f"call-{i}", tool_name=part.tool_name, args=part.args, tool_call_id=part.tool_call_id)
            elif not sent:
                for event in self._parts_manager.handle_text_delta(vendor_part_id=0, content=part.content):
                    yield event

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def provider_name(self) -> str:
        return "liquid-local"

    @property
    def provider_url(self) -> str | None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp

    async def close_stream(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


@dataclass
class CompletedStreamedResponse(StreamedResponse):
    """A finished ``ModelResponse`` as a stream (its parts emitted whole): a remote tool step in
    the JSON convention, which is a call or an answer only once complete."""

    response: ModelResponse | None = None

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        assert self.response is not None
        self._usage = self.response.usage
        self.finish_reason = self.response.finish_reason
        for i, part in enumerate(self.response.parts):
            if isinstance(part, ToolCallPart):
                yield self._parts_manager.handle_tool_call_part(
                    vendor_part_id=f"call-{i}", tool_name=part.tool_name, args=part.args, tool_call_id=part.tool_call_id)
            elif isinstance(part, TextPart):
                for event in self._parts_manager.handle_text_delta(vendor_part_id=i, content=part.content):
                    yield event

    @property
    def model_name(self) -> str:
        return self.response.model_name if self.response is not None and self.response.model_name else ""

    @property
    def provider_name(self) -> str:
        return "liquid-remote"

    @property
    def provider_url(self) -> str | None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self.response.timestamp if self.response is not None else datetime.now(UTC)
