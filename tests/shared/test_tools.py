"""Tool calls: the model calls a tool with valid arguments and uses its result."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared import default_model


class CapitalAnswer(BaseModel):
    country: str = Field(max_length=40)
    capital: str = Field(max_length=40, description="The capital city, as reported by the tool")


@pytest.mark.slow
async def test_agent_calls_tool_with_valid_args_and_uses_result():
    calls: list[str] = []
    agent = Agent(
        default_model(),
        output_type=CapitalAnswer,
        instructions="Answer questions about capitals. Always look the capital up with the tool.",
        model_settings={"temperature": 0.0},
    )

    @agent.tool_plain
    def lookup_capital(country: str) -> str:
        """Look up the capital city of a country."""
        calls.append(country)
        return f"The capital of {country} is Zubrowka City."

    result = await agent.run("What is the capital of Freedonia?")
    assert calls, "the tool was never called"
    assert all(isinstance(c, str) and c for c in calls)
    assert any("freedonia" in c.lower() for c in calls), calls
    assert "zubrowka" in result.output.capital.lower(), result.output
    # the tool's result reached the model as a tool return in the history
    kinds = [getattr(p, "part_kind", "") for m in result.all_messages() for p in m.parts]
    assert "tool-call" in kinds and "tool-return" in kinds


@pytest.mark.slow
async def test_text_agent_with_tool_returns_text():
    agent = Agent(default_model(), instructions="Use the tool to get the time.", model_settings={"temperature": 0.0})

    @agent.tool_plain
    def current_time() -> str:
        """The current time."""
        return "It is 14:05."

    result = await agent.run("What time is it?")
    assert isinstance(result.output, str) and result.output
