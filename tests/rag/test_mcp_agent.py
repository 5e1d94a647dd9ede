"""A pydantic-ai ``Agent`` that uses the MCP server (streamable HTTP at ``/mcp`` of a real uvicorn) as
its toolset, through pydantic-ai's own ``MCPToolset`` (FastMCP's client).

The agent's model is a ``FunctionModel`` that scripts the calls (orchestration). In the second test
the server's ``ask`` tool answers with the offline model, end to end; SmolLM2-135M itself cannot be
the agent's model here: its tool-call grammar for these five schemas needs more tokens than its
8192-token context (``PromptTooLong``), so that is not tested.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import (
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from rag_runtime import RagIndex, create_app

from .conftest import BEIR_DOCS, LiveServer
from .scripted_answers import scripted_answers

KEY = "agent-key"
QUESTION = "When was the Eiffel Tower built?"


def _parts(messages, kind):
    return [p for m in messages for p in m.parts if isinstance(p, kind)]


def _returns(messages, retried: bool = False) -> list[ToolReturnPart]:
    """Tool returns; ``retried``: those of failed calls (a tool error the model is asked to correct)."""
    return [p for p in _parts(messages, ToolReturnPart) if (getattr(p, "outcome", None) == "retried") == retried]


def search_then_fetch(messages, info: AgentInfo) -> ModelResponse:
    """search -> fetch a wrong id (a tool error comes back as a retry) -> fetch the top hit -> answer."""
    assert {"search", "fetch", "ask", "list_sources", "index_info"} <= {t.name for t in info.function_tools}
    returns = _returns(messages)
    retries = _returns(messages, retried=True) + _parts(messages, RetryPromptPart)
    if not returns:
        return ModelResponse(parts=[ToolCallPart("search", {"query": QUESTION, "k": 3})])
    if not retries:
        return ModelResponse(parts=[ToolCallPart("fetch", {"id": "no-such-id"})])
    if len(returns) == 1:
        top = returns[0].content["results"][0]["id"]
        return ModelResponse(parts=[ToolCallPart("fetch", {"id": top})])
    return ModelResponse(parts=[TextPart(returns[-1].content["text"])])


def test_an_agent_searches_and_fetches_through_the_mcp_toolset(beir_index_dir):
    index = RagIndex.load(beir_index_dir)
    with LiveServer(create_app(index=index, api_key=KEY, model=scripted_answers())) as server:
        async def main():
            toolset = MCPToolset(f"{server.url}/mcp", headers={"Authorization": f"Bearer {KEY}"})
            agent = Agent(FunctionModel(search_then_fetch), toolsets=[toolset])
            async with agent:
                return await agent.run(QUESTION)

        result = asyncio.run(main())
    messages = result.all_messages()
    searched = _returns(messages)[0].content
    assert [h["id"] for h in searched["results"]] == [h.id for h in index.retriever("hybrid").search(QUESTION, 3)]
    retry = (_returns(messages, retried=True) + _parts(messages, RetryPromptPart))[0]
    assert "no chunk with id 'no-such-id' in this index" in str(retry.content)
    assert result.output == BEIR_DOCS["eiffel"][1]


def ask_the_index(messages, info: AgentInfo) -> ModelResponse:
    returns = _returns(messages)
    if not returns:
        return ModelResponse(parts=[ToolCallPart("ask", {"question": QUESTION, "answer_style": "extractive"})])
    return ModelResponse(parts=[TextPart(returns[0].content["answer"])])


@pytest.mark.slow
@pytest.mark.real_model
def test_an_agent_asks_the_offline_model_through_mcp(beir_index_dir):
    index = RagIndex.load(beir_index_dir)
    with LiveServer(create_app(index=index, api_key=KEY)) as server:  # the default (offline) answer model
        async def main():
            toolset = MCPToolset(f"{server.url}/mcp", headers={"Authorization": f"Bearer {KEY}"})
            agent = Agent(FunctionModel(ask_the_index), toolsets=[toolset])
            async with agent:
                return await agent.run(QUESTION)

        result = asyncio.run(main())
    answered = _returns(result.all_messages())[0].content
    assert answered["refused"] is False and answered["answer_style"] == "extractive"
    assert answered["citations"][0] == "eiffel" and answered["answer"] in BEIR_DOCS["eiffel"][1]
    assert answered["support"]["supported"] is True
    assert result.output == answered["answer"]
