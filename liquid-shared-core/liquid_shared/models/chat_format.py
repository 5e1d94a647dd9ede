"""Turn pydantic-ai message history into chat-template messages, and describe schemas in prose.

Tool calls are a JSON convention decoded under a grammar (``{"tool": ..., "arguments": ...}`` or
``{"final": ...}``), so they work with any chat template, including ones without a tool syntax.
With ``tool_format="lfm2"`` (a template with LFM2's own format, ``tool_format_lfm2``) earlier calls
are written in that format and tool results become ``tool`` role messages.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        return "\n".join(c for c in content if isinstance(c, str))
    return json.dumps(content, default=str) if not isinstance(content, str) else content


def to_chat(messages: list[ModelMessage], instructions: str | None,
            tool_format: str | None = None) -> list[dict[str, str]]:
    """Map history to ``[{"role", "content"}]``; system parts and instructions become one system turn."""
    from liquid_shared.models.tool_format_lfm2 import LFM2, render_calls

    native = tool_format == LFM2
    system: list[str] = [instructions] if instructions else []
    chat: list[dict[str, str]] = []

    def add(role: str, text: str) -> None:
        if chat and chat[-1]["role"] == role:
            chat[-1]["content"] += "\n\n" + text
        else:
            chat.append({"role": role, "content": text})

    for msg in messages:
        if isinstance(msg, ModelRequest):
            for part in msg.parts:
                kind = getattr(part, "part_kind", "")
                if kind == "system-prompt":
                    system.append(part.content)
                elif kind == "user-prompt":
                    add("user", _content_text(part.content))
                elif kind == "tool-return" and native:
                    chat.append({"role": "tool", "content": part.model_response_str()})
                elif kind == "tool-return":
                    add("user", f"Result of tool `{part.tool_name}`: {part.model_response_str()}")
                elif kind in ("retry-prompt", "retry-feedback"):
                    add("user", part.model_response())
        elif isinstance(msg, ModelResponse):
            for part in msg.parts:
                kind = getattr(part, "part_kind", "")
                if kind == "text" and part.content:
                    add("assistant", part.content)
                elif kind == "tool-call" and native:
                    add("assistant", render_calls([(part.tool_name, part.args_as_dict())]))
                elif kind == "tool-call":
                    add("assistant", json.dumps({"tool": part.tool_name, "arguments": part.args_as_dict()}))
    out = [{"role": "system", "content": "\n\n".join(s for s in system if s)}] if any(system) else []
    return out + chat


def chat_messages(chat: list[dict[str, str]]) -> list[ModelMessage]:
    """The inverse direction: ``[{"role", "content"}]`` turns as pydantic-ai messages (system and
    user turns as request parts, assistant turns as text responses)."""
    from pydantic_ai.messages import SystemPromptPart, TextPart, UserPromptPart

    out: list[ModelMessage] = []
    for turn in chat:
        if turn["role"] == "assistant":
            out.append(ModelResponse(parts=[TextPart(content=turn["content"])]))
            continue
        part = SystemPromptPart(content=turn["content"]) if turn["role"] == "system" else UserPromptPart(content=turn["content"])
        if out and isinstance(out[-1], ModelRequest):
            out[-1] = ModelRequest(parts=[*out[-1].parts, part])
        else:
            out.append(ModelRequest(parts=[part]))
    return out


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return root.get("$defs", {}).get(ref.split("/")[-1], schema)
    return schema


def _type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    schema = _resolve(schema, root)
    if "enum" in schema:
        return "one of " + "|".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_name(s, root) for s in schema["anyOf"])
    t = schema.get("type", "any")
    if t == "array":
        return f"list of {_type_name(schema.get('items', {}), root)}"
    if t == "object" and "properties" in schema:
        inner = ", ".join(f"{k}: {_type_name(v, root)}" for k, v in schema["properties"].items())
        return "{" + inner + "}"
    return str(t)


def describe_schema(schema: dict[str, Any]) -> str:
    """A short prose rendering of an object schema's fields, for the prompt."""
    lines = []
    for name, prop in schema.get("properties", {}).items():
        desc = _resolve(prop, schema).get("description") or prop.get("description") or ""
        lines.append(f"- {name} ({_type_name(prop, schema)})" + (f": {desc}" if desc else ""))
    return "\n".join(lines)


def hoist_defs(schemas: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Move ``$defs`` of several schemas to one root so ``#/$defs/X`` refs resolve inside ``anyOf``."""
    defs: dict[str, Any] = {}
    out = []
    for s in schemas:
        s = dict(s)
        defs.update(s.pop("$defs", {}))
        out.append(s)
    return out, defs
