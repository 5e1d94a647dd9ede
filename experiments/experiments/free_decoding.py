"""Free (unconstrained) decoding of structured output, to compare with grammar-constrained decoding.

``FreeDecodingModel`` wraps a ``LiquidModel``: an agent with ``output_type=SomeModel`` gets
pydantic-ai's *prompted* output mode (the JSON schema is written into the instructions and the
reply is parsed and validated as JSON by pydantic-ai, with the agent's output retries), but the
request reaches the local model as plain text generation, with no grammar. The same agent, the
same prompt and the same model as constrained decoding; only the constraint is gone.

The model layer (``liquid_shared.models``) has no switch for this (its ``LiquidModel`` applies the
grammar in both native and prompted modes), hence this wrapper. It counts the replies and how
many of them parse as a JSON object (after stripping Markdown code fences), per output type.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings

FREE_PROFILE = ModelProfile(
    supports_tools=True,
    supports_json_schema_output=False,
    supports_json_object_output=False,
    default_structured_output_mode="prompted",
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parses_as_json_object(text: str) -> bool:
    """Whether ``text`` (optionally inside a Markdown code fence) is one JSON object."""
    match = _FENCE.match(text)
    try:
        value = json.loads(match.group(1) if match else text)
    except (json.JSONDecodeError, TypeError):
        return False
    return isinstance(value, dict)


class FreeDecodingModel(Model):
    """A ``LiquidModel`` asked for JSON by prompt only (see the module docstring)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.replies: Counter[str] = Counter()
        self.parsed: Counter[str] = Counter()
        super().__init__(profile=FREE_PROFILE)

    @property
    def model_name(self) -> str:
        return f"{self.inner.model_name}+free"

    @property
    def system(self) -> str:
        return self.inner.system

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        wanted = params.output_object.name if params.output_object is not None else None
        wanted = wanted or (params.output_object.json_schema.get("title") if params.output_object else None) or "text"
        text_params = replace(params, output_mode="text", output_object=None, output_tools=[],
                              prompted_output_template=None, allow_text_output=True)
        response = await self.inner.request(messages, model_settings, text_params)
        text = "".join(getattr(p, "content", "") for p in response.parts if getattr(p, "part_kind", "") == "text")
        self.replies[wanted] += 1
        self.parsed[wanted] += int(parses_as_json_object(text))
        return response

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: {"replies": self.replies[name], "json_objects": self.parsed[name]} for name in self.replies}
