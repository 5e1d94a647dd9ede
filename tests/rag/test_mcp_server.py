"""The MCP server with a real MCP client (FastMCP's ``Client``): over streamable HTTP at ``/mcp`` of a
real uvicorn on 127.0.0.1, and over stdio against the ``python -m rag_runtime mcp`` subprocess, on an
index built from a tiny BEIR folder. Results are checked against ``RagIndex`` called directly.

``ask`` runs on a scripted model (``scripted_answers``): what is tested here is the MCP surface; the
offline model answers through MCP in test_mcp_agent.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from rag_runtime import RagIndex, create_app
from rag_runtime.index import data_folder
from rag_runtime.service_limits import ServiceLimits

from .conftest import BEIR_DOCS, LiveServer
from .scripted_answers import GENERATIVE_ANSWER, scripted_answers

KEY = "mcp-key"
TOOLS = {"search", "fetch", "ask", "list_sources", "index_info"}


@pytest.fixture(scope="module")
def beir_index(beir_index_dir) -> RagIndex:
    return RagIndex.load(beir_index_dir)


@pytest.fixture(scope="module")
def http_server(beir_index):
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=scripted_answers())) as server:
        yield server


def http_client(server: LiveServer, **headers: str) -> Client:
    headers = headers or {"Authorization": f"Bearer {KEY}"}
    return Client(StreamableHttpTransport(f"{server.url}/mcp", headers=headers))


def stdio_client(index_dir: Path, *extra: str) -> Client:
    return Client(StdioTransport(sys.executable, ["-m", "rag_runtime", "mcp", "--index", str(index_dir), *extra],
                                 env=dict(os.environ), cwd=os.getcwd()))


async def _call_error(client: Client, tool: str, args: dict) -> str:
    result = await client.call_tool(tool, args, raise_on_error=False)
    assert result.is_error, f"{tool}({args}) should have failed: {result.structured_content}"
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def _check_tools_against_the_index(client: Client, index: RagIndex) -> None:
    tools = {t.name: t for t in await client.list_tools()}
    assert set(tools) == TOOLS
    assert all(t.annotations.readOnlyHint for t in tools.values())
    k_schema = tools["search"].inputSchema["properties"]["k"]
    assert (k_schema["minimum"], k_schema["maximum"]) == (1, 100)
    assert tools["search"].inputSchema.get("additionalProperties") is False

    for mode in ("hybrid", "bm25", "dense"):
        query = "When was the tower in Paris built?"
        result = await client.call_tool("search", {"query": query, "k": 3, "mode": mode})
        expected = index.retriever(mode).search(query, 3)
        got = result.structured_content["results"]
        assert [h["id"] for h in got] == [h.id for h in expected]
        assert [h["score"] for h in got] == pytest.approx([h.score for h in expected])
        assert got[0]["id"] == "eiffel"
        text = result.content[0].text  # the chunks as delimited data, for an LLM client
        assert text.startswith("<documents>") and '<document id="eiffel" title="Eiffel Tower">' in text

    fetched = (await client.call_tool("fetch", {"id": "tides"})).structured_content
    doc = index.store.docs[index.store.row_of["tides"]]
    assert fetched == {"id": "tides", "title": doc.title, "text": doc.text, "metadata": doc.metadata}

    sources = (await client.call_tool("list_sources", {})).structured_content
    expected_sources = Counter(str(d.metadata["source"]) for d in index.store.docs)
    assert {s["source"]: s["chunks"] for s in sources["sources"]} == dict(expected_sources)
    assert sources["total_chunks"] == len(BEIR_DOCS)

    info = (await client.call_tool("index_info", {})).structured_content
    assert info["chunks"] == len(BEIR_DOCS) and info["modes"] == ["hybrid", "bm25", "dense"]
    assert info["allowed_answer_styles"] == ["generative", "extractive"]


async def _check_bad_inputs_give_tool_errors(client: Client) -> None:
    assert "k: Input should be less than or equal to 100 (got 1000)" in await _call_error(
        client, "search", {"query": "tower", "k": 1000})
    assert "k: Input should be greater than or equal to 1 (got 0)" in await _call_error(
        client, "search", {"query": "tower", "k": 0})
    assert "must contain some non-space text" in await _call_error(client, "search", {"query": "   "})
    assert "mode" in await _call_error(client, "search", {"query": "tower", "mode": "magic"})
    assert "limit" in await _call_error(client, "search", {"query": "tower", "limit": 3})
    assert await _call_error(client, "fetch", {"id": "no-such-chunk"}) == (
        "no chunk with id 'no-such-chunk' in this index (ids come from search results)")
    assert "k: Input should be less than or equal to 20" in await _call_error(
        client, "ask", {"question": "When was the Eiffel Tower built?", "k": 50})
    # and the server still serves
    result = await client.call_tool("search", {"query": "sourdough starter feeding", "k": 1})
    assert result.structured_content["results"][0]["id"] == "sourdough"


def test_http_client_lists_and_calls_every_tool_like_the_index(http_server, beir_index):
    async def main():
        async with http_client(http_server) as client:
            await _check_tools_against_the_index(client, beir_index)
            await _check_bad_inputs_give_tool_errors(client)

    asyncio.run(main())


def test_http_ask_chooses_style_per_call(http_server):
    async def main():
        async with http_client(http_server) as client:
            question = "How often does a sourdough starter need feeding?"
            generative = (await client.call_tool("ask", {"question": question})).structured_content
            extractive = (await client.call_tool("ask", {"question": question, "answer_style": "extractive"})).structured_content
            refused = (await client.call_tool("ask", {"question": "Who won the football world cup in 1954?"})).structured_content
            mixed = await _call_error(client, "ask", {"question": question, "answer_style": "extractive",
                                                      "answer_mode": "tool"})
            return generative, extractive, refused, mixed

    generative, extractive, refused, mixed = asyncio.run(main())
    assert generative["answer"] == GENERATIVE_ANSWER and generative["answer_style"] == "generative"
    assert generative["citations"] and generative["support"] is not None
    assert extractive["answer_style"] == "extractive" and extractive["citations"] == ["sourdough"]
    assert extractive["answer"] in BEIR_DOCS["sourdough"][1]
    assert refused["refused"] is True and refused["citations"] == []
    assert "answer_style 'extractive' needs answer_mode 'context' or 'auto'" in mixed


def test_http_mcp_is_behind_the_api_key_and_the_host_and_origin_checks(http_server):
    url = f"{http_server.url}/mcp"
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(url, json=init, headers=accept).status_code == 401
    assert httpx.post(url, json=init, headers={**accept, "Authorization": "Bearer wrong"}).status_code == 401
    good = {**accept, "X-API-Key": KEY}
    assert httpx.post(url, json=init, headers={**good, "Host": "attacker.example"}).status_code == 421
    assert httpx.post(url, json=init, headers={**good, "Origin": "http://attacker.example"}).status_code == 403

    async def with_x_api_key():
        async with http_client(http_server, **{"X-API-Key": KEY}) as client:
            return len(await client.list_tools())

    assert asyncio.run(with_x_api_key()) == len(TOOLS)


def test_an_allowed_origin_and_host_pass(beir_index):
    app = create_app(index=beir_index, model=scripted_answers(), cors_origins=["http://app.example"],
                     mcp_allowed_hosts=["rag.internal:*"])
    with LiveServer(app) as server:
        url = f"{server.url}/mcp"
        headers = {"Accept": "application/json, text/event-stream"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert httpx.post(url, json=body, headers={**headers, "Origin": "http://app.example"}).status_code == 200
        assert httpx.post(url, json=body, headers={**headers, "Host": "rag.internal:8000"}).status_code == 200
        assert httpx.post(url, json=body, headers={**headers, "Origin": "http://other.example"}).status_code == 403


def test_mcp_requests_take_rate_limit_tokens(beir_index):
    limits = ServiceLimits(rate_per_s=0.01, burst=3)
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=scripted_answers(), limits=limits)) as server:
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {KEY}"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        codes = [httpx.post(f"{server.url}/mcp", json=body, headers=headers).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        # /search shares the key's bucket
        assert httpx.post(f"{server.url}/search", json={"query": "tides"}, headers=headers).status_code == 429


def test_mcp_ask_shares_the_answer_slots_with_ask(beir_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0)
    app = create_app(index=beir_index, api_key=KEY, model=scripted_answers(delay_s=1.5), limits=limits)
    with LiveServer(app) as server:
        async def main():
            async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as ac:
                slow_ask = asyncio.create_task(ac.post("/ask", json={"question": "When was the Eiffel Tower built?"}))
                await asyncio.sleep(0.5)
                async with http_client(server) as client:
                    busy = await _call_error(client, "ask", {"question": "When was the Eiffel Tower built?"})
                    search = await client.call_tool("search", {"query": "Eiffel Tower", "k": 1})  # not an answer slot
                return (await slow_ask).status_code, busy, search.structured_content["results"][0]["id"]

        status, busy, top = asyncio.run(main())
    assert status == 200 and top == "eiffel"
    assert busy == "busy: 1 answers already in progress; retry in 1 s"


def test_a_model_that_cannot_load_is_a_tool_error_and_search_goes_on(beir_index, tmp_path):
    from liquid_shared.models import LiquidModel, ModelSpec

    broken = LiquidModel(ModelSpec(model=str(tmp_path / "no-such-model")))
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=broken)) as server:
        async def main():
            async with http_client(server) as client:
                error = await _call_error(client, "ask", {"question": "When was the Eiffel Tower built?"})
                top = (await client.call_tool("search", {"query": "Eiffel Tower", "k": 1})).structured_content
                return error, top["results"][0]["id"]

        error, top = asyncio.run(main())
    assert error.startswith("answer model unavailable:") and "no-such-model" in error and top == "eiffel"


@pytest.mark.slow
def test_stdio_subprocess_serves_the_same_tools(beir_index_dir, beir_index):
    async def main():
        async with stdio_client(beir_index_dir) as client:
            await _check_tools_against_the_index(client, beir_index)
            await _check_bad_inputs_give_tool_errors(client)

    asyncio.run(main())


def test_stdio_with_a_missing_index_answers_tool_errors_and_keeps_serving(tmp_path):
    async def main():
        async with stdio_client(tmp_path / "nothing-here") as client:
            first = await _call_error(client, "search", {"query": "tower"})
            second = await _call_error(client, "index_info", {})
            return first, second, len(await client.list_tools())

    first, second, n_tools = asyncio.run(main())
    assert first.startswith("the index could not be loaded:") and "nothing-here" in first and "no such index folder" in first
    assert second == first and n_tools == len(TOOLS)


def test_stdio_a_damaged_index_is_a_tool_error(beir_index_dir, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(beir_index_dir, damaged)
    (data_folder(damaged) / "docs.jsonl").write_text('{"id": "x", "text": ')

    async def main():
        async with stdio_client(damaged) as client:
            return await _call_error(client, "fetch", {"id": "eiffel"})

    assert "the index could not be loaded:" in asyncio.run(main())


@pytest.mark.slow
def test_stdio_stdout_carries_only_protocol_messages(beir_index_dir):
    """Raw JSON-RPC over the subprocess's pipes: every stdout line is a JSON-RPC message, while the
    index and the query encoder load (their logs go to stderr)."""
    from mcp.types import LATEST_PROTOCOL_VERSION

    proc = subprocess.Popen([sys.executable, "-m", "rag_runtime", "mcp", "--index", str(beir_index_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LATEST_PROTOCOL_VERSION, "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search", "arguments": {"query": "tides", "k": 2}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fetch", "arguments": {"id": "nope"}}},
    ]
    replies = {}
    try:
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if "id" in message:
                while message["id"] not in replies:
                    line = proc.stdout.readline()
                    assert line, f"the server closed stdout; stderr: {proc.stderr.read()[-2000:]}"
                    reply = json.loads(line)  # anything but JSON here fails the test
                    assert reply["jsonrpc"] == "2.0"
                    if "id" in reply:
                        replies[reply["id"]] = reply
        rest, err = proc.communicate(timeout=60)  # closes stdin: the server ends
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in rest.splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0"
    assert replies[2]["result"]["structuredContent"]["results"][0]["id"] == "tides"
    assert replies[3]["result"]["isError"] is True
    assert err  # the logs went somewhere: stderr
