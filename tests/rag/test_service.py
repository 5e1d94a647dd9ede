"""The HTTP service started for real (uvicorn on 127.0.0.1) and called over HTTP with httpx."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest


@pytest.fixture(scope="module")
def client(live_server):
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": live_server.api_key}, timeout=600) as c:
        yield c


def test_health_is_open_and_describes_the_index(live_server):
    r = httpx.get(f"{live_server.url}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["documents"] == 36 and body["auth"] is True
    assert body["modes"] == ["hybrid", "bm25", "dense"]


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_search_returns_ranked_hits(client, mode):
    r = client.post("/search", json={"query": "Why did the central bank increase interest rates?", "k": 3, "mode": mode})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == mode and len(body["hits"]) == 3
    assert body["hits"][0]["id"].startswith("finance-")
    assert mode in body["hits"][0]["scores"] or mode == "hybrid"
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_with_filters_fusion_and_boosts(client):
    r = client.post("/search", json={
        "query": "The goalkeeper saved a penalty", "k": 3, "fusion": "weighted", "dense_weight": 0.7,
        "filters": {"categories": ["recreation", "food"]},
        "boosts": [{"field": "categories", "value": "food", "factor": 50}],
    })
    assert r.status_code == 200, r.text
    assert [h["id"].split("-")[0] for h in r.json()["hits"]] == ["cooking"] * 3


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "rates", "k": -1}, 422, "k: Input should be greater than or equal to 1 (got -1)"),
        ({"query": "rates", "k": 10_000}, 422, "k: Input should be less than or equal to 100 (got 10000)"),
        ({"query": "x" * 3000}, 422, "query: String should have at most 2000 characters (got a string of 3000"),
        ({"query": "rates", "k": "ten"}, 422, "k: Input should be a valid integer"),
        ({"query": "rates", "k": "5"}, 422, "k: Input should be a valid integer"),
        ({"query": 42}, 422, "query: Input should be a valid string"),
        ({"query": ["a", "b"]}, 422, "query: Input should be a valid string"),
        ({"k": 5}, 422, "query: Field required"),
        ({"query": "   "}, 422, "query: Value error, must contain some non-space text"),
        ({"query": "rates", "mode": "magic"}, 422, "mode: Input should be 'hybrid', 'bm25' or 'dense'"),
        ({"query": "rates", "limit": 5}, 422, "limit: Extra inputs are not permitted"),
        ({"query": "rates", "filters": {"colour": "red"}}, 422, "filters.colour: Extra inputs are not permitted"),
        ({"query": "rates", "dense_weight": 2}, 422, "dense_weight: Input should be less than or equal to 1"),
        ({"query": "rates", "mode": "bm25", "boosts": [{"field": "tags", "value": "x", "factor": 2}]}, 422,
         "boosts apply to mode 'hybrid' only"),
    ],
)
def test_bad_search_requests_get_422_with_a_useful_message(client, body, status, message):
    r = client.post("/search", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_a_1mb_query_is_refused_with_413(client):
    r = client.post("/search", json={"query": "x" * 1_000_000, "k": 5})
    assert r.status_code == 413
    assert "request body too large" in r.json()["detail"] and "limit is 65536 bytes" in r.json()["detail"]


def test_a_streamed_oversized_body_is_refused_with_413(client):
    def chunks():
        yield b'{"query": "'
        for _ in range(100):
            yield b"x" * 10_000
        yield b'"}'

    r = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "streamed" in r.json()["detail"]


def test_invalid_json_and_wrong_content_are_422(client):
    r = client.post("/search", content=b'{"query": "rates", ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/search", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "valid dictionary" in r.json()["detail"]


def test_auth_is_required_when_enabled(live_server):
    r = httpx.post(f"{live_server.url}/search", json={"query": "rates"})
    assert r.status_code == 401 and r.json()["detail"] == (
        "missing API key: send it in the X-API-Key header or as 'Authorization: Bearer KEY'")
    r = httpx.post(f"{live_server.url}/search", json={"query": "rates"}, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = httpx.post(f"{live_server.url}/ask", json={"question": "rates"})
    assert r.status_code == 401
    assert httpx.get(f"{live_server.url}/metrics").status_code == 401


def test_bad_ask_requests_get_422(client):
    for body, message in [({"question": "why?", "k": 0}, "k: Input should be greater than or equal to 1"),
                          ({"question": "why?", "k": 21}, "k: Input should be less than or equal to 20"),
                          ({"k": 3}, "question: Field required")]:
        r = client.post("/ask", json=body)
        assert r.status_code == 422 and message in r.json()["detail"]


def test_ask_refuses_an_off_topic_question(client):
    r = client.post("/ask", json={"question": "What is the capital of Mongolia?"})
    assert r.status_code == 200, r.text
    assert r.json()["refused"] is True and r.json()["citations"] == []


@pytest.mark.slow
def test_ask_answers_with_citations_from_the_default_offline_model(client):
    r = client.post("/ask", json={"question": "Why should pastry rest in the fridge?", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refused"] is False and body["answer"].strip()
    assert body["citations"] and set(body["citations"]) <= {h["id"] for h in body["context"]}


def test_metrics_count_requests_by_endpoint_and_status(client):
    client.post("/search", json={"query": "rates", "k": -1})
    client.post("/search", json={"query": "rates"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'rag_requests_total{endpoint="/search",status="422"}' in text
    assert 'rag_requests_total{endpoint="/search",status="200"}' in text
    assert 'rag_request_seconds_count{endpoint="/search"}' in text
    assert "rag_index_documents 36.0" in text


QUERIES = [
    "Why did the central bank increase interest rates?", "telescope galaxy", "How do I knead dough?",
    "blood pressure and heart disease", "world record swimming relay", "how does a compiler work",
]


async def run_load(url: str, api_key: str, n: int, concurrency: int) -> list[int | str]:
    """Send ``n`` /search requests with ``concurrency`` in flight; return each status (or error name)."""
    statuses: list[int | str] = []
    queries = itertools.cycle(QUERIES)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": api_key}, limits=limits, timeout=120) as ac:
        async def worker(count: int) -> None:
            for _ in range(count):
                try:
                    r = await ac.post("/search", json={"query": next(queries), "k": 10})
                    statuses.append(r.status_code if r.json()["hits"] else "no hits")
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)

        per_worker = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        await asyncio.gather(*(worker(c) for c in per_worker))
    return statuses


@pytest.mark.slow
async def test_load_2000_searches_at_concurrency_32_without_errors(live_server):
    statuses = await run_load(live_server.url, live_server.api_key, n=2000, concurrency=32)
    assert len(statuses) == 2000
    errors = [s for s in statuses if s != 200]
    assert errors == []
