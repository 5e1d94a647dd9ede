"""Tool policy on the local model: ``tool_choice``, ``require_tool_first`` and ``max_tool_rounds``,
in both tool-call formats (the JSON convention and LFM2's own); and what a truncated output does.

The policy is enforced by the step's grammar, so the step tests compile the grammar of the real
request ``LiquidModel`` builds and check which outputs it accepts (xgrammar's matcher on strings).
The agent tests run the tiny random LFM2 for real.
"""

from __future__ import annotations

import json

import pytest
import xgrammar as xgr
from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.settings import ToolOrOutput
from pydantic_ai.tools import ToolDefinition

from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
from liquid_shared.models.backend import GenRequest
from liquid_shared.models.pydantic_model import _parse_lfm2
from liquid_shared.models.tool_format_lfm2 import CALL_END, CALL_START


def _tool(name: str) -> ToolDefinition:
    return ToolDefinition(name=name, description=f"The {name} tool.",
                          parameters_json_schema={"type": "object", "properties": {"q": {"type": "string"}},
                                                  "required": ["q"], "additionalProperties": False})


ALPHA, BETA = _tool("alpha"), _tool("beta")
# what each format's model would write for: a call of alpha, a call of beta, a final text answer
OUTPUTS = {
    None: {"alpha": '{"tool": "alpha", "arguments": {"q": "x"}}', "beta": '{"tool": "beta", "arguments": {"q": "x"}}',
           "final": '{"final": "done"}'},
    "lfm2": {"alpha": f'{CALL_START}[alpha(q="x")]{CALL_END}', "beta": f'{CALL_START}[beta(q="x")]{CALL_END}',
             "final": "done"},
}
_COMPILER = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)


def accepts(req: GenRequest, text: str) -> bool:
    """Whether the request's grammar accepts ``text`` as a whole output (no grammar: anything)."""
    if req.ebnf is not None:
        compiled = _COMPILER.compile_grammar(req.ebnf)
    elif req.json_schema is not None:
        compiled = _COMPILER.compile_json_schema(json.dumps(req.json_schema), any_whitespace=False, strict_mode=True)
    else:
        return True
    matcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(text) and matcher.is_terminated()


def allowed(tool_format, tool_choice=None, rounds: int = 0, **spec) -> set[str]:
    model = LiquidModel(ModelSpec(model="unused-name", max_new_tokens=32, **spec))
    history: list = [ModelRequest(parts=[UserPromptPart(content="Go.")])]
    for i in range(rounds):
        history += [ModelResponse(parts=[ToolCallPart(tool_name="alpha", args={"q": "x"}, tool_call_id=f"c{i}")]),
                    ModelRequest(parts=[ToolReturnPart(tool_name="alpha", content="ok", tool_call_id=f"c{i}")])]
    params = ModelRequestParameters(function_tools=[ALPHA, BETA], allow_text_output=True, output_mode="text")
    settings = {"tool_choice": tool_choice} if tool_choice is not None else {}
    req, mode = model._gen_request(history, settings, params, tool_format=tool_format)
    if mode == "text":  # no tools offered on this step: a plain text answer
        return {"final"}
    return {kind for kind, text in OUTPUTS[tool_format].items() if accepts(req, text)}


@pytest.mark.parametrize("tool_format", [None, "lfm2"])
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"alpha", "beta", "final"}),
        ({"tool_choice": "auto"}, {"alpha", "beta", "final"}),
        ({"tool_choice": "none"}, {"final"}),
        ({"tool_choice": "required"}, {"alpha", "beta"}),
        ({"tool_choice": ["beta"]}, {"beta"}),
        ({"tool_choice": ToolOrOutput(function_tools=["alpha"])}, {"alpha", "final"}),
        ({"require_tool_first": True}, {"alpha", "beta"}),
        ({"require_tool_first": True, "rounds": 1}, {"alpha", "beta", "final"}),
        ({"max_tool_rounds": 2, "rounds": 1}, {"alpha", "beta", "final"}),
        ({"max_tool_rounds": 2, "rounds": 2}, {"final"}),
        ({"tool_choice": "required", "max_tool_rounds": 1, "rounds": 1}, {"final"}),
    ],
)
def test_tool_choice_and_rounds_decide_what_the_step_grammar_allows(tool_format, kwargs, expected):
    assert allowed(tool_format, **kwargs) == expected


class Tag(BaseModel):
    label: str = Field(max_length=10)
    score: int


@pytest.fixture(params=["json-convention", "lfm2-format"])
def tiny_dir(request, tiny_lfm2_dir, tiny_lfm2_tools_dir):
    return tiny_lfm2_dir if request.param == "json-convention" else tiny_lfm2_tools_dir


def _agent(folder, **spec) -> tuple[Agent, list[str]]:
    spec = ModelSpec(model=str(folder), dtype="fp32", temperature=0.0, max_new_tokens=16,
                     default_max_string_chars=16, **spec)
    agent = Agent(LiquidModel(spec, registry=ModelRegistry(2**31)), output_type=Tag)
    calls: list[str] = []

    @agent.tool_plain
    def lookup(q: str) -> str:
        """Look something up."""
        calls.append(q)
        return "found"

    return agent, calls


@pytest.mark.slow
async def test_require_tool_first_and_max_tool_rounds_count_per_user_turn(tiny_dir):
    agent, calls = _agent(tiny_dir, require_tool_first=True, max_tool_rounds=1)
    first = await agent.run("Look up 'tide'.")
    assert len(calls) == 1 and isinstance(first.output, Tag)
    # a new user turn: the first step must call again, then one round only
    second = await agent.run("Now look up 'moon'.", message_history=first.all_messages())
    assert len(calls) == 2 and isinstance(second.output, Tag)
    agent.model.registry.cleanup()


async def test_tool_choice_none_never_calls_even_when_a_first_call_is_required(tiny_dir):
    agent, calls = _agent(tiny_dir, require_tool_first=True, max_tool_rounds=3)
    result = await agent.run("Look up 'tide'.", model_settings={"tool_choice": "none"})
    assert calls == [] and isinstance(result.output, Tag)
    assert not any(isinstance(p, ToolCallPart) for m in result.all_messages() for p in m.parts)
    agent.model.registry.cleanup()


async def test_a_tiny_token_budget_does_not_cut_structured_output(tiny_lfm2_dir):
    # max_tokens=2 cannot hold a Tag; the budget is raised to what the tightened schema can need,
    # so the JSON closes instead of being cut
    agent, _ = _agent(tiny_lfm2_dir)
    result = await agent.run("Tag this.", model_settings={"max_tokens": 2})
    assert isinstance(result.output, Tag) and result.usage.output_tokens > 2
    agent.model.registry.cleanup()


async def test_truncated_json_is_reported_as_incomplete_text_not_a_call(tiny_lfm2_dir, tiny_lfm2_tools_dir):
    registry = ModelRegistry(2**31)
    spec = ModelSpec(model=str(tiny_lfm2_dir), dtype="fp32", temperature=0.0)
    schema = {"type": "object", "properties": {"tool": {"const": "lookup"},
                                               "arguments": {"type": "object", "properties": {"q": {"type": "string", "maxLength": 40}},
                                                             "required": ["q"]}},
              "required": ["tool", "arguments"]}
    # a request straight to the backend (no budget raise): 4 tokens cannot close this JSON
    result = await registry.generate(spec, GenRequest(messages=[{"role": "user", "content": "Go."}], json_schema=schema,
                                                      max_new_tokens=4, temperature=0.0))
    assert result.complete is False and result.output_tokens == 4
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)
    params = ModelRequestParameters(function_tools=[_tool("lookup")], allow_text_output=True, output_mode="text")
    parts = LiquidModel._parse(result.text, "tools", params)
    assert [type(p) for p in parts] == [TextPart] and parts[0].content == result.text
    # the same for a call in LFM2's format cut before its end
    cut = f'{CALL_START}[lookup(q="ti'
    assert [type(p) for p in _parse_lfm2(cut)] == [TextPart]
    registry.cleanup()


def test_the_budget_estimate_covers_an_integer_written_digit_by_digit():
    from liquid_shared.models.grammar import estimate_max_tokens, tighten_schema

    # SmolLM2's (and LFM2's) tokenisers split digits: "-1000000000000000" is 17 tokens. The estimate
    # was 12 for any integer, and a random LFM2 writing "score": -22222222222222... was cut (found by
    # test_require_tool_first_and_max_tool_rounds_count_per_user_turn)
    assert estimate_max_tokens(tighten_schema({"type": "integer"}, 10, 4)) >= 17
    assert estimate_max_tokens({"type": "integer", "minimum": 0, "maximum": 9}) < 5
    assert estimate_max_tokens(tighten_schema({"type": "number"}, 10, 4)) >= 24
