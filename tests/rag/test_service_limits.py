"""Service limits over real HTTP (uvicorn on 127.0.0.1): load shedding (503), timeouts (504), a rate
limit per API key (429), CORS; and the embedding-model confinement of an index.

The /ask tests use a scripted model that sleeps, because what is tested is the HTTP service's
behaviour while answers are in flight (the real model's answers are tested in test_answer.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

import httpx
import pytest
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from rag_runtime import IndexFormatError, RagIndex, create_app
from rag_runtime.index import data_folder
from rag_runtime.service_limits import RateLimiter, ServiceLimits

from .conftest import LiveServer

KEY = "limits-key"
QUESTION = "Why should pastry rest in the fridge?"


def sleepy_model(seconds: float) -> FunctionModel:
    """Answers after ``seconds`` (async sleep, like a model decoding), citing the first chunk offered."""

    async def answer(messages, info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(seconds)
        schema = info.model_request_parameters.output_object.json_schema
        cite = schema["properties"]["citations"]["items"]["enum"][0]
        return ModelResponse(parts=[TextPart(json.dumps({"answer": "So the butter stays cold.", "citations": [cite]}))])

    return FunctionModel(answer, profile={"supports_json_schema_output": True, "default_structured_output_mode": "native"})


def _server(rag_index, **kwargs) -> LiveServer:
    kwargs.setdefault("api_key", KEY)
    return LiveServer(create_app(index=rag_index, **kwargs))


async def _asks(url: str, n: int, key: str = KEY) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as ac:
        return await asyncio.gather(*(ac.post("/ask", json={"question": QUESTION}) for _ in range(n)))


@pytest.mark.slow
def test_asks_over_the_concurrency_limit_get_503_with_retry_after(rag_index):
    limits = ServiceLimits(max_concurrent_asks=2, ask_queue_timeout_s=0)
    with _server(rag_index, model=sleepy_model(1.5), limits=limits) as server:
        responses = asyncio.run(_asks(server.url, 6))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 503, 503, 503, 503]
        shed = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" and "busy: 2 answers already in progress" in r.json()["detail"]
                   for r in shed)
        assert all(r.json()["citations"] for r in responses if r.status_code == 200)
        # the slots are free again afterwards, and /search is never shed
        assert [r.status_code for r in asyncio.run(_asks(server.url, 2))] == [200, 200]
        metrics = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).text
        assert 'rag_requests_total{endpoint="/ask",status="503"} 4.0' in metrics


def test_asks_over_the_limit_wait_in_the_queue_up_to_its_timeout(rag_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=10)
    with _server(rag_index, model=sleepy_model(0.5), limits=limits) as server:
        start = time.monotonic()
        responses = asyncio.run(_asks(server.url, 3))
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert time.monotonic() - start >= 1.4  # served one after another, not at once


def test_a_request_over_the_timeout_gets_504_and_frees_its_slot(rag_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0, request_timeout_s=0.5)
    with _server(rag_index, model=sleepy_model(5), limits=limits) as server:
        r = httpx.post(f"{server.url}/ask", json={"question": QUESTION}, headers={"X-API-Key": KEY}, timeout=30)
        assert r.status_code == 504 and r.json()["detail"] == "request timed out after 0.5 s"
        # the cancelled answer released its slot: the next one is not shed (it times out as well)
        assert httpx.post(f"{server.url}/ask", json={"question": QUESTION}, headers={"X-API-Key": KEY},
                          timeout=30).status_code == 504


def test_rate_limit_per_api_key_answers_429_after_the_burst(rag_index):
    limits = ServiceLimits(rate_per_s=0.5, burst=3)
    with _server(rag_index, limits=limits) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        codes = [c.post("/search", json={"query": "pastry"}, headers={"X-API-Key": KEY}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/search", json={"query": "pastry"}, headers={"X-API-Key": KEY})
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert "rate limit: 0.5 requests/s (burst 3) per API key" in r.json()["detail"]
        # a wrong key is refused for what it is, and does not use the bucket of the right one
        assert c.post("/search", json={"query": "pastry"}, headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/health").status_code == 200  # health is not rate limited


def test_rate_limit_without_auth_is_per_client_address(rag_index):
    with _server(rag_index, api_key=None, limits=ServiceLimits(rate_per_s=0.1, burst=1)) as server:
        assert httpx.post(f"{server.url}/search", json={"query": "pastry"}).status_code == 200
        assert httpx.post(f"{server.url}/search", json={"query": "pastry"}).status_code == 429


def test_token_bucket_refills_at_its_rate_and_keeps_keys_apart():
    now = [0.0]
    bucket = RateLimiter(rate_per_s=2, burst=2, max_buckets=2, clock=lambda: now[0])
    assert [bucket.take("a"), bucket.take("a")] == [0, 0]
    assert bucket.take("a") == pytest.approx(0.5)
    assert bucket.take("b") == 0  # another key has its own bucket
    now[0] = 1.0  # 1 s at 2 tokens/s: a's bucket is full again (capped at the burst)
    assert [bucket.take("a"), bucket.take("a"), bucket.take("a") > 0] == [0, 0, True]
    bucket.take("c")  # a third key evicts the least recently used one (b)
    assert set(bucket._buckets) == {"a", "c"}


def test_cors_is_off_by_default_and_lists_only_the_given_origins(rag_index):
    preflight = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-api-key"}
    with _server(rag_index) as server:
        r = httpx.options(f"{server.url}/search", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with _server(rag_index, cors_origins=["https://app.example.org"]) as server:
        r = httpx.options(f"{server.url}/search", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        other = httpx.options(f"{server.url}/search", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        get = httpx.get(f"{server.url}/health", headers={"Origin": "https://app.example.org"})
        assert get.headers["access-control-allow-origin"] == "https://app.example.org"


# -- the embedding model of an index -----------------------------------------------------------

def _index_naming(rag_index_dir, tmp_path, model: str):
    folder = tmp_path / "crafted"
    shutil.copytree(rag_index_dir, folder)
    config_path = data_folder(folder) / "dense" / "dense_config.json"
    config = json.loads(config_path.read_text())
    config["embedding_model"] = model
    config_path.write_text(json.dumps(config))
    return folder


def _minilm_dir():
    from liquid_shared.offline import minilm_path

    return minilm_path()


def test_an_index_naming_a_model_outside_its_folder_is_refused(rag_index_dir, tmp_path):
    outside = str(_minilm_dir())
    folder = _index_naming(rag_index_dir, tmp_path, outside)
    with pytest.raises(IndexFormatError, match="neither a model folder inside the index folder nor on the allow-list"):
        RagIndex.load(folder)
    with pytest.raises(IndexFormatError, match=r"allow it at start-up \(serve --allow-embedding-model"):
        create_app(folder)
    for name in ("../../elsewhere", "sentence-transformers/all-mpnet-base-v2", "~/models/x"):
        with pytest.raises(IndexFormatError, match="refusing to load it"):
            RagIndex.load(_index_naming(rag_index_dir, tmp_path / name.replace("/", "_"), name))
    # the operator's allow-list lets it through, and the encoder loads from it
    index = RagIndex.load(folder, allowed_embedding_models=[outside])
    assert index.dense.encoder_model == outside
    assert index.retriever("dense").search("pastry fridge butter", 1)[0].id.startswith("cooking-")


def test_a_model_folder_inside_the_index_is_allowed_but_a_symlink_out_is_not(rag_index_dir, tmp_path):
    folder = _index_naming(rag_index_dir, tmp_path, "model")
    shutil.copytree(_minilm_dir(), folder / "model", copy_function=os.link)  # hard links: a real folder inside
    index = RagIndex.load(folder)
    assert index.dense.encoder_model == str((folder / "model").resolve())
    assert index.retriever("dense").search("interest rates inflation", 1)[0].id.startswith("finance-")

    linked = _index_naming(rag_index_dir, tmp_path / "linked", "model")
    (linked / "model").symlink_to(_minilm_dir(), target_is_directory=True)
    with pytest.raises(IndexFormatError, match="'model' is neither a model folder inside the index folder"):
        RagIndex.load(linked)
