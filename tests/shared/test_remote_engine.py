"""Remote engines through a real llama.cpp ``llama-server`` (bundled SmolLM2 GGUF, 4 slots, API key)
started by the session fixture: structured output, a tool round trip, concurrent agent runs, the
registry, one-line errors naming the URL, and retries on 429/503 only (a real loopback HTTP server)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
from liquid_shared.models.errors import ModelLoadError, RemoteModelError, RemoteModelUnavailable
from liquid_shared.models.llama_server import LLAMA_SERVER_VERSION, free_port

REPO = Path(__file__).resolve().parents[2]


def _spec(server, **kw) -> ModelSpec:
    kw.setdefault("temperature", 0.0)
    return ModelSpec(model=server.alias, backend="openai", base_url=server.base_url,
                     api_key_env="LIQUID_TEST_LLAMA_KEY", max_batch_size=server.parallel, **kw)


class Card(BaseModel):
    title: str
    facts: list[str]


class Mood(BaseModel):
    mood: Literal["happy", "sad", "neutral"]
    intensity: int = Field(ge=1, le=5)


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str
    coastal: bool


def test_build_script_and_python_pin_the_same_version():
    script = (REPO / "scripts" / "build_llama_server.sh").read_text()
    assert f'LLAMA_CPP_PYTHON_VERSION:-{LLAMA_SERVER_VERSION}' in script


async def test_structured_output_for_several_schemas_validates(llama_server):
    registry = ModelRegistry(budget_bytes=1)  # a remote spec needs no budget
    spec = _spec(llama_server, default_max_string_chars=40, default_max_items=3)
    model = LiquidModel(spec, registry=registry)
    card = await Agent(model, output_type=Card, instructions="Write a study card.").run("Tides.")
    mood = await Agent(model, output_type=Mood).run("I won the lottery today!")
    city = await Agent(model, output_type=City).run("Name a city by the sea.")
    assert isinstance(card.output, Card) and isinstance(mood.output, Mood) and isinstance(city.output, City)
    # our tightening reached the server's grammar: caps on strings and lists the schema left open
    assert len(card.output.title) <= 40 and len(card.output.facts) <= 3
    assert all(len(f) <= 40 for f in card.output.facts)
    assert registry.loaded_bytes == 0 and registry.load_counts[spec] == 1


def _population_agent(server, calls: list[str]) -> Agent:
    # SmolLM2's chat template has no tool syntax (llama.cpp drops tools= from its prompt), so tool
    # steps go out as a json_schema response of the call union (remote_tool_calls="json_schema")
    spec = _spec(server, require_tool_first=True, max_tool_rounds=1, remote_tool_calls="json_schema")
    agent = Agent(LiquidModel(spec, registry=ModelRegistry()),
                  instructions="Use the tool to look up the population, then answer.")

    @agent.tool_plain
    def population(city: str) -> str:
        """Population of a city."""
        calls.append(city)
        return f"{city} has 1234 inhabitants."

    return agent


async def test_tool_round_trip_through_the_server(llama_server):
    calls: list[str] = []
    result = await _population_agent(llama_server, calls).run("What is the population of Lyon?")
    assert calls, "the model never called the tool"
    kinds = [p.part_kind for m in result.all_messages() for p in m.parts]
    assert kinds.index("tool-call") < kinds.index("tool-return") < len(kinds) - 1
    assert isinstance(result.output, str) and result.output
    # the final step saw the tool's result: it was sent after the call, in the same run
    assert result.all_messages()[-1].parts[0].part_kind == "text"


async def test_streamed_tool_round_trip_through_the_server(llama_server):
    calls: list[str] = []
    async with _population_agent(llama_server, calls).run_stream("What is the population of Paris?") as run:
        output = await run.get_output()
    assert calls and isinstance(output, str) and output


def test_remote_tool_mode_is_refused_for_a_local_spec():
    with pytest.raises(ValueError, match="remote_tool_calls is a remote-engine option"):
        ModelSpec(model="offline:smollm2-135m-instruct", remote_tool_calls="json_schema")


async def test_concurrent_agent_runs_share_one_engine(llama_server):
    registry = ModelRegistry()
    spec = _spec(llama_server, default_max_string_chars=30, default_max_items=2)
    agents = [Agent(LiquidModel(spec, registry=registry), output_type=Card) for _ in range(8)]
    results = await asyncio.gather(*(a.run(f"A card about topic {i}.") for i, a in enumerate(agents)))
    assert all(isinstance(r.output, Card) for r in results)
    engine = registry.get(spec)
    assert registry.load_counts[spec] == 1 and engine.requests >= 8


async def test_connection_refused_is_one_line_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = LiquidModel(ModelSpec(model="m", backend="openai", base_url=url), registry=ModelRegistry())
    with pytest.raises(RemoteModelUnavailable) as info:
        await Agent(model).run("hi")
    message = str(info.value)
    assert url in message and "cannot connect" in message and "\n" not in message
    assert isinstance(info.value, ModelLoadError)  # the ETL treats it as fatal: no document can succeed


async def test_wrong_key_and_unknown_path_are_clear(llama_server, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "nope")
    bad_key = ModelSpec(model="m", backend="openai", base_url=llama_server.base_url, api_key_env="WRONG_KEY")
    with pytest.raises(RemoteModelUnavailable, match=r"HTTP 401.*WRONG_KEY"):
        await Agent(LiquidModel(bad_key, registry=ModelRegistry())).run("hi")
    bad_path = _spec(llama_server).model_copy(update={"base_url": llama_server.base_url.replace("/v1", "/nope/v1")})
    with pytest.raises(RemoteModelUnavailable, match="HTTP 404"):
        await Agent(LiquidModel(bad_path, registry=ModelRegistry())).run("hi")
    with pytest.raises(RemoteModelUnavailable, match="MISSING_KEY_VAR .*is not set"):
        ModelRegistry().get(ModelSpec(model="m", backend="openai", base_url="http://x/v1", api_key_env="MISSING_KEY_VAR"))


async def test_timeout_names_the_limit(llama_server):
    spec = _spec(llama_server, request_timeout_s=0.001, max_new_tokens=200)
    with pytest.raises(RemoteModelError, match=r"no answer within 0\.001 s"):
        await Agent(LiquidModel(spec, registry=ModelRegistry())).run("Write a long story.")


class _Status(http.server.BaseHTTPRequestHandler):
    status = 503
    hits = 0

    def do_POST(self):  # noqa: N802 - http.server's naming
        type(self).hits += 1
        body = json.dumps({"error": {"message": "busy", "type": "server_error"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "expected_hits"), [(503, 3), (429, 3), (500, 1), (400, 1)])
async def test_only_429_and_503_are_retried(status, expected_hits):
    handler = type("H", (_Status,), {"status": status, "hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        spec = ModelSpec(model="m", backend="openai", base_url=url, max_retries=2)
        with pytest.raises(RemoteModelError, match=f"HTTP {status}") as info:
            await Agent(LiquidModel(spec, registry=ModelRegistry())).run("hi")
        assert url in str(info.value)
        assert handler.hits == expected_hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_etl_end_to_end_with_the_remote_profile(llama_server, tmp_path):
    from liquid_shared.schemas import Chunk, QAPair, read_jsonl

    out = tmp_path / "run"
    env = {**os.environ, "LIQUID_OPENAI_BASE_URL": llama_server.base_url, "LIQUID_OPENAI_MODEL": llama_server.alias,
           "LIQUID_OPENAI_API_KEY_ENV": "LIQUID_TEST_LLAMA_KEY", "LIQUID_OPENAI_MAX_CONCURRENCY": "4"}
    proc = subprocess.run(
        [sys.executable, "-m", "etl_pipeline.run_etl", str(REPO / "data" / "samples"), "-o", str(out),
         "--profile", "remote", "--limit", "1", "--max-chunks-per-doc", "3", "--qa-per-chunk", "1",
         "--concurrency", "4", "--no-track", "-q"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["documents"]["failed"] == 0
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    pairs = list(read_jsonl(out / "qa_pairs.jsonl", QAPair))
    assert chunks and pairs  # every record re-validates against its schema
    assert report["memory"]["loaded_weight_bytes"] == {llama_server.alias: 0}  # nothing loaded in process
