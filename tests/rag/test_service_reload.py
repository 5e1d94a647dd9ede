"""Serving a new index version without a restart, over real HTTP (uvicorn on 127.0.0.1): the
watcher and ``POST /admin/reload``, searches during a reload, a corrupt version, the low-memory swap.

The old version's documents all say "alpha", the new one's "beta" (and there are fewer of them),
so a response that mixed versions, or rows of one with documents of the other, would show.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from rag_runtime import IndexedDoc, RagIndex, create_app
from rag_runtime.index import MANIFEST_FILE, data_folder

from .conftest import TOPICS, LiveServer

KEY = "reload-key"
QUERY = {"query": "telescope galaxy bread dough interest rates vaccine", "k": 8, "mode": "hybrid"}


def versioned_docs(word: str, per_topic: int) -> list[IndexedDoc]:
    return [IndexedDoc(id=f"{word}-{topic}-{i}", text=f"{word} {spec['sentences'][i]}",
                       metadata={"source": f"{word}/{topic}.md"})
            for topic, spec in TOPICS.items() for i in range(per_topic)]


def publish(index: RagIndex, folder: Path) -> None:
    """Write ``index`` into ``folder`` the way the contract says: every other file first, then
    manifest.json atomically (os.replace), last."""
    staging = folder.parent / f".staging-{time.monotonic_ns()}"
    index.save(staging)
    for entry in sorted(staging.iterdir()):
        if entry.name == MANIFEST_FILE:
            continue
        target = folder / entry.name
        if entry.is_dir() and target.exists():
            old = folder / f".old-{entry.name}-{time.monotonic_ns()}"
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old)
        else:
            os.replace(entry, target)
    os.replace(staging / MANIFEST_FILE, folder / MANIFEST_FILE)
    shutil.rmtree(staging)


@pytest.fixture(scope="module")
def alpha() -> RagIndex:
    return RagIndex.build(versioned_docs("alpha", 6))


@pytest.fixture(scope="module")
def beta() -> RagIndex:
    return RagIndex.build(versioned_docs("beta", 4))


@pytest.fixture
def index_dir(alpha, tmp_path) -> Path:
    folder = tmp_path / "index"
    alpha.save(folder)
    return folder


def _version_of(response: httpx.Response) -> str:
    """'alpha' or 'beta' when every hit is of that version (and its id agrees with its text)."""
    hits = response.json()["hits"]
    assert hits, response.text
    words = {h["text"].split()[0] for h in hits}
    assert all(h["id"].split("-")[0] == h["text"].split()[0] for h in hits), hits
    assert len(words) == 1, f"a response mixes index versions: {sorted(words)}"
    return words.pop()


def _health(server: LiveServer) -> dict:
    return httpx.get(f"{server.url}/health").json()


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _metric(server: LiveServer, line_start: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(line_start)))


def test_admin_reload_exists_only_with_a_key_and_needs_a_valid_one(index_dir):
    with LiveServer(create_app(index_dir)) as open_server:
        assert httpx.post(f"{open_server.url}/admin/reload").status_code == 404
    with LiveServer(create_app(index_dir, api_key=KEY)) as server:
        url = f"{server.url}/admin/reload"
        assert httpx.post(url).status_code == 401
        assert httpx.post(url, headers={"X-API-Key": "wrong"}).status_code == 401
        assert _health(server)["reload"]["reloads"] == 0
        ok = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["status"] == "reloaded" and body["documents"] == 36
        assert body["version"] == body["previous_version"] == _health(server)["index_version"]
        assert _health(server)["reload"]["reloads"] == 1
        assert _metric(server, 'rag_index_reloads_total{outcome="reloaded"}') == 1


@pytest.mark.slow
def test_searches_during_reloads_all_succeed_and_each_comes_from_one_version(index_dir, beta, alpha):
    """Eight clients search without pause while the watcher swaps in beta, then the admin route
    swaps alpha back: no failed request, no mixed response, and no client sees an older version
    after a newer one."""
    app = create_app(index_dir, api_key=KEY, reload_interval_s=0.2)
    with LiveServer(app) as server:
        first = _health(server)["index_version"]
        stop = threading.Event()
        seen: list[list[str]] = [[] for _ in range(8)]
        failures: list[str] = []

        def client(n: int) -> None:
            with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as http:
                while not stop.is_set():
                    try:
                        r = http.post("/search", json=QUERY)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                            continue
                        seen[n].append(_version_of(r))
                    except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
                        failures.append(repr(exc))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            _wait_for(lambda: all(len(s) >= 3 for s in seen))
            publish(beta, index_dir)
            _wait_for(lambda: _health(server)["index_version"] != first)
            marks = [len(s) for s in seen]
            _wait_for(lambda: all(len(s) >= m + 3 for s, m in zip(seen, marks, strict=True)))
            publish(alpha, index_dir)  # the same docs as at start, a new manifest
            reloaded = httpx.post(f"{server.url}/admin/reload", headers={"X-API-Key": KEY}, timeout=60)
            marks = [len(s) for s in seen]
            _wait_for(lambda: all(len(s) >= m + 3 for s, m in zip(seen, marks, strict=True)))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not failures, failures[:5]
        assert reloaded.status_code == 200 and reloaded.json()["documents"] == 36
        for versions in seen:
            # alpha..., beta..., alpha...: each client sees the versions in the order they were served
            changes = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
            assert changes == ["alpha", "beta", "alpha"], changes
        health = _health(server)
        assert health["documents"] == 36 and health["reload"]["reloads"] >= 2 and health["reload"]["status"] == "ok"
        assert _metric(server, "rag_index_documents ") == 36


def test_a_corrupt_version_keeps_the_old_one_served(index_dir, beta):
    with LiveServer(create_app(index_dir, api_key=KEY, reload_interval_s=0.1)) as server:
        headers = {"X-API-Key": KEY}
        served = _health(server)["index_version"]
        # a new manifest over a truncated docs.jsonl: the load fails, alpha stays
        docs_file = data_folder(index_dir) / "docs.jsonl"  # the current version's (a versioned index)
        docs = docs_file.read_bytes()
        docs_file.write_bytes(docs[: len(docs) // 2])
        manifest = (index_dir / MANIFEST_FILE).read_text()
        (index_dir / "next.json").write_text(manifest.replace('"created_at": "', '"created_at": "1'))
        os.replace(index_dir / "next.json", index_dir / MANIFEST_FILE)
        _wait_for(lambda: _health(server)["reload"]["failures"] == 1)
        health = _health(server)
        assert health["reload"]["status"] == "failed" and health["index_version"] == served
        assert _metric(server, "rag_index_reload_failing ") == 1
        r = httpx.post(f"{server.url}/search", json=QUERY, headers=headers)
        assert r.status_code == 200 and _version_of(r) == "alpha"
        time.sleep(0.5)  # the watcher does not retry the same failed manifest
        assert _health(server)["reload"]["failures"] == 1
        # the admin route says why, with 409, and still serves alpha
        failed = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=60)
        assert failed.status_code == 409
        assert failed.json()["status"] == "failed" and failed.json()["version"] == served
        assert "docs.jsonl" in failed.json()["error"]
        # a manifest that is not JSON at all: failed too
        (index_dir / MANIFEST_FILE).write_text("{not json")
        assert httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=60).status_code == 409
        # a good version is picked up by the watcher and clears the failure
        publish(beta, index_dir)
        _wait_for(lambda: _health(server)["reload"]["status"] == "ok")
        assert _health(server)["documents"] == 24 and _metric(server, "rag_index_reload_failing ") == 0
        r = httpx.post(f"{server.url}/search", json=QUERY, headers=headers)
        assert _version_of(r) == "beta"


def test_low_memory_reload_answers_503_with_retry_after_until_the_new_version_is_in(index_dir, beta):
    app = create_app(index_dir, api_key=KEY, reload_low_memory=True)
    reloader = app.state.reloader
    release = threading.Event()
    real_loader = reloader.loader

    def held_loader(folder):
        release.wait(30)  # hold the window open: the old version is gone, the new one not yet in
        return real_loader(folder)

    reloader.loader = held_loader
    with LiveServer(app) as server:
        headers = {"X-API-Key": KEY}
        publish(beta, index_dir)
        reloading = threading.Thread(target=lambda: httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=60))
        reloading.start()
        _wait_for(lambda: reloader.peek() is None)
        during = httpx.post(f"{server.url}/search", json=QUERY, headers=headers)
        assert during.status_code == 503 and int(during.headers["retry-after"]) >= 1
        assert "being reloaded" in during.json()["detail"]
        assert httpx.get(f"{server.url}/health").status_code == 503
        release.set()
        reloading.join(60)
        after = httpx.post(f"{server.url}/search", json=QUERY, headers=headers)
        assert after.status_code == 200 and _version_of(after) == "beta"


def test_mcp_tools_and_the_chat_api_follow_the_reload(index_dir, beta):
    """The MCP tools and the chat API hold no index of their own: after a reload they serve beta."""
    import asyncio

    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    from .scripted_answers import scripted_answers

    async def mcp_view(url: str) -> tuple[str, int]:
        async with Client(StreamableHttpTransport(f"{url}/mcp", headers={"X-API-Key": KEY})) as client:
            hits = (await client.call_tool("search", {"query": QUERY["query"], "k": 5})).structured_content["results"]
            info = (await client.call_tool("index_info", {})).structured_content
            return {h["id"].split("-")[0] for h in hits}.pop(), info["chunks"]

    def chat_citations(url: str) -> list[str]:
        body = {"model": "liquid-rag", "messages": [{"role": "user", "content": "What did the telescope record?"}]}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["citations"]]

    with LiveServer(create_app(index_dir, api_key=KEY, model=scripted_answers())) as server:
        assert asyncio.run(mcp_view(server.url)) == ("alpha", 36)
        cited = chat_citations(server.url)
        assert cited and all(c.startswith("alpha-") for c in cited)
        publish(beta, index_dir)
        assert httpx.post(f"{server.url}/admin/reload", headers={"X-API-Key": KEY}, timeout=60).status_code == 200
        assert asyncio.run(mcp_view(server.url)) == ("beta", 24)
        cited = chat_citations(server.url)
        assert cited and all(c.startswith("beta-") for c in cited)


def test_a_failed_low_memory_reload_serves_nothing_until_a_good_version_loads(index_dir, beta):
    app = create_app(index_dir, api_key=KEY, reload_low_memory=True)
    reloader = app.state.reloader
    (index_dir / MANIFEST_FILE).write_text("{not json")
    outcome = reloader.check()
    assert outcome.status == "failed" and outcome.version is None and "manifest" in outcome.error
    assert reloader.peek() is None and reloader.health()["status"] == "failed"
    assert reloader.check().status == "failed"  # with nothing served, every poll tries again
    publish(beta, index_dir)
    assert reloader.check().status == "reloaded" and len(reloader.current.index.store) == 24
    assert reloader.check() is None  # unchanged since


def test_a_served_run_folder_reloads_when_its_index_gets_a_new_version(alpha, beta, tmp_path):
    """``serve --index RUN`` watches ``RUN/index/manifest.json`` (the run's own manifest.json is the ETL's)."""
    run = tmp_path / "run"
    alpha.save(run / "index")
    (run / "chunks.jsonl").write_text("", encoding="utf-8")
    (run / MANIFEST_FILE).write_text('{"etl": "run manifest"}', encoding="utf-8")
    app = create_app(run, api_key=KEY, reload_interval_s=0.2)
    with LiveServer(app) as server:
        assert _version_of(httpx.post(f"{server.url}/search", json=QUERY, headers={"X-API-Key": KEY}, timeout=60)) == "alpha"
        beta.save(run / "index")
        _wait_for(lambda: _version_of(httpx.post(f"{server.url}/search", json=QUERY, headers={"X-API-Key": KEY}, timeout=60)) == "beta")
        assert _health(server)["reload"]["reloads"] == 1
