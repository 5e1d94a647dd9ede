"""Answers chosen per request on ``/ask`` (``answer_mode``, ``answer_style``), within what the server
was started to allow (``AgentPool``), over real HTTP; a scripted model (the transport is tested)."""

from __future__ import annotations

import httpx
import pytest

from rag_runtime import RagIndex, create_app
from rag_runtime.agent_pool import AgentPool, AnswerChoiceError

from .conftest import BEIR_DOCS, LiveServer
from .scripted_answers import GENERATIVE_ANSWER, scripted_answers

QUESTION = "How often does a sourdough starter need feeding?"


@pytest.fixture(scope="module")
def beir_index(beir_index_dir) -> RagIndex:
    return RagIndex.load(beir_index_dir)


def test_ask_takes_the_style_per_request(beir_index):
    with LiveServer(create_app(index=beir_index, model=scripted_answers())) as server:
        default = httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=60).json()
        extractive = httpx.post(f"{server.url}/ask", json={"question": QUESTION, "answer_style": "extractive"},
                                timeout=60).json()
        mixed = httpx.post(f"{server.url}/ask", json={"question": QUESTION, "answer_style": "extractive",
                                                     "answer_mode": "tool"}, timeout=60)
        unknown = httpx.post(f"{server.url}/ask", json={"question": QUESTION, "answer_style": "poetic"}, timeout=60)
    assert default["style"] == "generative" and default["answer"] == GENERATIVE_ANSWER
    assert extractive["style"] == "extractive" and extractive["answer"] in BEIR_DOCS["sourdough"][1]
    assert mixed.status_code == 422 and "needs answer_mode 'context' or 'auto'" in mixed.json()["detail"]
    assert unknown.status_code == 422 and "answer_style: Input should be 'generative' or 'extractive'" in unknown.json()["detail"]


def test_a_server_allows_only_what_it_was_started_with(beir_index):
    app = create_app(index=beir_index, model=scripted_answers(), answer_style="extractive",
                     allowed_answer_styles=["extractive"], allowed_answer_modes=["auto", "context"])
    with LiveServer(app) as server:
        default = httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=60).json()
        refused = httpx.post(f"{server.url}/ask", json={"question": QUESTION, "answer_style": "generative"}, timeout=60)
        tool = httpx.post(f"{server.url}/ask", json={"question": QUESTION, "answer_mode": "tool"}, timeout=60)
    assert default["style"] == "extractive"
    assert refused.status_code == 422
    assert "answer_style 'generative' is not allowed on this server (allowed: extractive)" in refused.json()["detail"]
    assert tool.status_code == 422 and "answer_mode 'tool' is not allowed" in tool.json()["detail"]


def test_pool_options_are_checked_at_start_and_agents_are_shared(beir_index):
    with pytest.raises(ValueError, match="the default answer_style 'generative' is not among the allowed ones"):
        AgentPool(beir_index.bm25, scripted_answers(), allowed_styles=["extractive"])
    with pytest.raises(ValueError, match="unknown 'poetic'"):
        AgentPool(beir_index.bm25, scripted_answers(), allowed_styles=["poetic"])
    pool = AgentPool(beir_index.bm25, scripted_answers())
    assert pool.agent() is pool.agent(None, "generative")
    assert pool.agent(answer_style="extractive").mode == "context"  # auto + extractive is context
    assert pool.agent(earlier=["What is a sourdough starter?"]) is not pool.agent()
    with pytest.raises(AnswerChoiceError):
        pool.choice("magic", None)
