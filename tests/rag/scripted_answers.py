"""A scripted answer model for the MCP and chat-API tests (orchestration: what is tested is the
transport around the answer, the real model's answers are tested in test_answer.py).

It answers the schema it is offered: for a generative answer, a fixed sentence citing the first
chunk id offered; for an extractive one, the first candidate sentence. Streams in pieces of four
characters, ``delay_s`` apart (``delay_s`` also delays a whole answer).
"""

from __future__ import annotations

import asyncio
import json

from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

GENERATIVE_ANSWER = "So the butter stays cold."
NATIVE = {"supports_json_schema_output": True, "default_structured_output_mode": "native"}


def _body(info: AgentInfo) -> str:
    props = info.model_request_parameters.output_object.json_schema["properties"]
    if "citations" in props:
        return json.dumps({"answer": GENERATIVE_ANSWER, "citations": [_first(props["citations"]["items"])]})
    return json.dumps({"answer": _first(props["answer"])})


def _first(schema: dict) -> str:
    return schema["enum"][0] if "enum" in schema else schema["const"]  # a one-value Literal is a const


def scripted_answers(delay_s: float = 0.0) -> FunctionModel:
    async def whole(messages, info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(delay_s)
        return ModelResponse(parts=[TextPart(_body(info))])

    async def pieces(messages, info: AgentInfo):
        text = _body(info)
        for i in range(0, len(text), 4):
            await asyncio.sleep(delay_s / 10)
            yield text[i:i + 4]

    return FunctionModel(whole, stream_function=pieces, profile=NATIVE)
