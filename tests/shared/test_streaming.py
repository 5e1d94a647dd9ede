"""``agent.run_stream`` on the local model: structured output arrives in several partial outputs
while the row decodes and the final one is validated; a streamed tool step still calls the tool."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec


class Note(BaseModel):
    topic: str = Field(max_length=40)
    points: list[str] = Field(max_length=2)


def _model(folder, **kw) -> LiquidModel:
    return LiquidModel(ModelSpec(model=str(folder), dtype="fp32", temperature=0.0, **kw), registry=ModelRegistry())


@pytest.mark.slow
async def test_structured_output_streams_and_validates(tiny_lfm2_dir):
    agent = Agent(_model(tiny_lfm2_dir), output_type=Note)
    partials = 0
    async with agent.run_stream("A note about bread.") as stream:
        async for _ in stream.stream_output(debounce_by=None):
            partials += 1
        output = await stream.get_output()
    assert isinstance(output, Note) and partials > 1


@pytest.mark.slow
async def test_a_streamed_tool_step_calls_the_tool(tiny_lfm2_dir):
    agent = Agent(_model(tiny_lfm2_dir, require_tool_first=True, max_tool_rounds=1, max_new_tokens=16))
    calls: list[str] = []

    @agent.tool_plain
    def lookup(word: str) -> str:
        """Look a word up."""
        calls.append(word)
        return "found"

    async with agent.run_stream("Look up 'tide'.") as stream:
        text = await stream.get_output()
    assert calls and isinstance(text, str)
