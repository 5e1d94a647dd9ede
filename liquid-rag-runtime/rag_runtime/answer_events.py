"""Events of a streamed answer (``AnswerAgent.ask_stream``), and the answer text drawn from the
model's streamed JSON.

In context mode the model decodes JSON (``{"answer": "...", "citations": [...]}``) under a grammar;
a client wants the *answer text* as it grows, not raw JSON. ``DraftAnswerText`` parses the JSON
received so far as partial JSON (pydantic-core's ``allow_partial="trailing-strings"``, so an
unfinished string counts) and returns what the ``answer`` field gained since the last call.

Order of events: one ``Retrieved`` (the chunks that cleared the relevance bar, before any
generation), then ``AnswerDelta`` pieces while the model decodes, then one ``AnswerDone`` with the
validated answer (exactly what ``AnswerAgent.ask`` returns). When pydantic-ai asks the model again
(an output that failed validation or a citation check), an ``AnswerReset`` comes before the new
draft's first delta: discard the text received so far. A failure raises from the iterator
(``AnswerError`` for a model that could not answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta
from pydantic_core import from_json

from rag_runtime.hits import Hit


@dataclass(frozen=True)
class Retrieved:
    kind: Literal["context"]
    question: str
    hits: list[Hit]


@dataclass(frozen=True)
class AnswerDelta:
    kind: Literal["delta"]
    text: str


@dataclass(frozen=True)
class AnswerReset:
    kind: Literal["reset"]
    reason: str


@dataclass(frozen=True)
class AnswerDone:
    kind: Literal["answer"]
    answer: Any  # rag_runtime.answer.Answer (not imported here: answer imports this module)


AnswerEvent = Retrieved | AnswerDelta | AnswerReset | AnswerDone
Listener = Callable[[AnswerEvent], Awaitable[None]]
RESET_REASON = "the model's draft was rejected (invalid output or citation); it is answering again"


def partial_answer_field(raw: str) -> str | None:
    """The ``answer`` field of a possibly unfinished JSON object, or None if there is none yet."""
    try:
        value = from_json(raw, allow_partial="trailing-strings")
    except ValueError:
        return None  # e.g. cut inside an escape sequence: wait for more text
    if isinstance(value, dict) and isinstance(value.get("answer"), str):
        return value["answer"]
    return None


class DraftAnswerText:
    """Feed the model's text pieces; get back what the answer text gained (leading space dropped)."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        value = partial_answer_field(self.raw)
        if value is None:
            return ""
        value = value.lstrip()
        if not value.startswith(self.sent) or len(value) == len(self.sent):
            return ""
        gained, self.sent = value[len(self.sent):], value
        return gained


def _text_piece(event: Any) -> str:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


def delta_handler(emit: Listener) -> Callable[[Any, AsyncIterable[Any]], Awaitable[None]]:
    """A pydantic-ai ``event_stream_handler`` that turns each model response's text into
    ``AnswerDelta`` events (and an ``AnswerReset`` before a new draft once one was sent)."""
    drafts_sent = 0

    async def handle(_ctx: Any, events: AsyncIterable[Any]) -> None:
        nonlocal drafts_sent
        draft = DraftAnswerText()
        async for event in events:
            piece = _text_piece(event)
            if not piece:
                continue
            gained = draft.feed(piece)
            if not gained:
                continue
            if draft.sent == gained:  # this draft's first text
                if drafts_sent:
                    await emit(AnswerReset(kind="reset", reason=RESET_REASON))
                drafts_sent += 1
            await emit(AnswerDelta(kind="delta", text=gained))

    return handle
