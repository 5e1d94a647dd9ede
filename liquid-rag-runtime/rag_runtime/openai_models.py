"""The chat API's request (parsed and checked into ``ChatRequest``) and its response bodies.

Request checking, each failure a ``ChatAPIError`` 400 naming the parameter:

* parameters we do not support (``tools``, ``response_format``, ``stop``, ``logit_bias``...) are
  refused by name, not ignored; ``n`` must be 1 and ``logprobs`` false (a ``null`` counts as absent);
* accepted and ignored, since they cannot change an answer that is decoded greedily and at most
  600 characters long: ``temperature``, ``top_p``, ``seed``, ``max_tokens``,
  ``max_completion_tokens``, ``user``, ``stream_options``;
* extensions: ``answer_style``, ``answer_mode``, ``k`` (chunks retrieved), ``filters``;
* messages: ``system``/``developer`` are accepted and not used (the answer instructions are the
  server's), ``user``/``assistant`` make the conversation, ``tool``/``function`` messages, tool
  calls and non-text content parts are refused; the last message is the user's question.

Models: ``liquid-rag`` answers in the server's default style, ``liquid-rag-generative`` and
``liquid-rag-extractive`` in that style (only the styles the server allows are listed).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag_runtime.answer import Answer, AnswerMode, AnswerStyle
from rag_runtime.api_models import MAX_ASK_K, MAX_QUERY_CHARS, validation_message
from rag_runtime.filters import MetadataFilter
from rag_runtime.openai_errors import ChatAPIError

MODEL_PREFIX = "liquid-rag"
MODEL_STYLES: dict[str, str | None] = {MODEL_PREFIX: None, f"{MODEL_PREFIX}-generative": "generative",
                                       f"{MODEL_PREFIX}-extractive": "extractive"}
ACCEPTED = ("model", "messages", "stream", "stream_options", "n", "logprobs", "temperature", "top_p", "seed",
            "max_tokens", "max_completion_tokens", "user", "answer_style", "answer_mode", "k", "filters")
CITATION_EXCERPT_CHARS = 300


class ChatRequest(BaseModel):
    """A checked chat request: the question, the earlier user turns, and the answer options."""

    model_config = ConfigDict(extra="forbid")

    model: str
    question: str
    earlier: list[str]
    stream: bool = False
    answer_style: AnswerStyle | None = None
    answer_mode: AnswerMode | None = None
    k: int = 4
    filters: MetadataFilter | None = None


class _Options(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1, max_length=200)
    messages: list[Any] = Field(min_length=1)
    stream: bool = False
    n: int = 1
    logprobs: bool = False
    answer_style: AnswerStyle | None = None
    answer_mode: AnswerMode | None = None
    k: int = Field(4, ge=1, le=MAX_ASK_K)
    filters: MetadataFilter | None = None


def _fail(message: str, param: str | None = None, code: str | None = "invalid_value") -> ChatAPIError:
    return ChatAPIError(400, message, param=param, code=code)


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise _fail(f"{where}.content[{i}]: only text parts are supported (got type {kind!r})",
                            f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise _fail(f"{where}.content: must be a string or a list of text parts", f"{where}.content")


def _turns(messages: list[Any]) -> list[tuple[str, str]]:
    turns = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(f"{where}: must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role in ("tool", "function"):
            raise _fail(f"{where}.role {role!r}: tool messages are not supported (this endpoint has no tools)",
                        f"{where}.role", "unsupported_parameter")
        if role not in ("system", "developer", "user", "assistant"):
            raise _fail(f"{where}.role: must be system, developer, user or assistant (got {role!r})", f"{where}.role")
        if message.get("tool_calls") or message.get("function_call"):
            raise _fail(f"{where}: tool calls are not supported (this endpoint has no tools)", f"{where}.tool_calls",
                        "unsupported_parameter")
        turns.append((role, _text_of(message.get("content"), where)))
    return turns


def parse_chat_request(body: Any) -> ChatRequest:
    """Check a decoded JSON body (see the module docstring); raises ``ChatAPIError`` 400."""
    if not isinstance(body, dict):
        raise _fail("the request body must be a JSON object")
    present = {k: v for k, v in body.items() if v is not None}
    unsupported = [k for k in present if k not in ACCEPTED]
    if unsupported:
        raise _fail(f"unsupported parameter{'s' if len(unsupported) > 1 else ''}: {', '.join(unsupported)}; this "
                    f"endpoint answers from the index and takes: {', '.join(ACCEPTED)}", unsupported[0],
                    "unsupported_parameter")
    if present.get("n", 1) != 1:
        raise _fail(f"n: only one choice is supported (got {present['n']!r})", "n", "unsupported_parameter")
    if present.get("logprobs", False) is not False:
        raise _fail("logprobs: log probabilities are not supported", "logprobs", "unsupported_parameter")
    try:
        options = _Options.model_validate(present)
    except ValidationError as exc:
        detail, items = validation_message(list(exc.errors()))
        raise _fail(f"invalid request: {detail}", items[0]["field"] if items else None) from exc
    if options.model not in MODEL_STYLES:
        raise ChatAPIError(404, f"the model {options.model!r} does not exist; GET /v1/models lists the models "
                                f"({', '.join(MODEL_STYLES)})", param="model", code="model_not_found")
    turns = _turns(options.messages)
    role, question = turns[-1]
    if role != "user":
        raise _fail(f"the last message must be the user's question (got role {role!r})", "messages")
    if not question.strip():
        raise _fail("the last user message is empty", "messages")
    if len(question) > MAX_QUERY_CHARS:
        raise _fail(f"the question (the last user message) has {len(question)} characters; at most "
                    f"{MAX_QUERY_CHARS}", "messages")
    style = MODEL_STYLES[options.model]
    if style and options.answer_style and options.answer_style != style:
        raise _fail(f"the model {options.model!r} answers in style {style!r}; the request asks answer_style "
                    f"{options.answer_style!r} (use the model {MODEL_PREFIX!r} to choose the style)", "answer_style")
    return ChatRequest(model=options.model, question=question.strip(),
                       earlier=[text for role, text in turns[:-1] if role == "user" and text.strip()],
                       stream=options.stream, answer_style=options.answer_style or style,
                       answer_mode=options.answer_mode, k=options.k, filters=options.filters)


# ---- responses ----------------------------------------------------------------------------------

def markers(answer: Answer) -> str:
    """`` [1][2]`` for an answer's citations (empty for none)."""
    return (" " + "".join(f"[{i}]" for i in range(1, len(answer.citations) + 1))) if answer.citations else ""


def citations_field(answer: Answer) -> list[dict]:
    """The documented extra field ``citations``: one object per ``[n]`` marker, in order."""
    by_id = {h.id: h for h in answer.context}
    out = []
    for i, cid in enumerate(answer.citations, 1):
        hit = by_id.get(cid)
        text = hit.text if hit else ""
        out.append({"index": i, "id": cid, "title": hit.title if hit else "",
                    "source": hit.metadata.get("source") if hit else None,
                    "text": text if len(text) <= CITATION_EXCERPT_CHARS else text[:CITATION_EXCERPT_CHARS] + "..."})
    return out


def rag_field(answer: Answer) -> dict:
    """The documented extra field ``rag``: how the answer was made."""
    return {"answer": answer.answer, "refused": answer.refused, "reason": answer.reason,
            "support": answer.support.model_dump() if answer.support is not None else None,
            "answer_mode": answer.mode, "answer_style": answer.style}


def completion_body(answer: Answer, model: str, completion_id: str, created: int) -> dict:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer + markers(answer),
                                             "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": None,
        "citations": citations_field(answer), "rag": rag_field(answer),
    }


def chunk_body(completion_id: str, created: int, model: str, delta: dict, finish_reason: str | None = None,
               **extra: Any) -> dict:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}


def models_body(allowed_styles: tuple[str, ...], created: int) -> dict:
    names = [name for name, style in MODEL_STYLES.items() if style is None or style in allowed_styles]
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                        "owned_by": "liquid-rag-runtime"} for name in names]}
