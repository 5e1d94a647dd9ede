"""Load test of the HTTP service: /search and /ask at rising concurrency until it sheds load.

Starts ``python -m rag_runtime serve`` on 127.0.0.1 (a free port) over the shipped samples' index,
then, for each concurrency level, keeps that many requests in flight for ``--requests`` requests
(or until ``--level-seconds`` have passed), recording status codes, latency and the server's RSS.
Loopback only, bounded in count and time, and the server is stopped at the end. A level "holds"
when every request got a 200; past the ask limit the service must answer 503 with Retry-After
(the documented shedding), and never another 5xx or a hang (client timeout ``--client-timeout``).

    python bench/bench_rag_load.py --search-levels 1,4,16,64,128 --requests 150 --ask-levels 2,4,8
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag_samples import samples_index  # noqa: E402

SEARCHES = ["how do tides work", "feeding a sourdough starter", "oil a bicycle chain", "Gutenberg printing press",
            "photosynthesis light energy", "honeybee waggle dance", "shield volcano lava"]
ASKS = ["How often should I feed a sourdough starter?", "What causes spring tides?", "How do you oil a bicycle chain?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def level(url: str, path: str, bodies: list[dict], concurrency: int, n: int, seconds: float,
                client_timeout: float, pid: int) -> dict:
    statuses: Counter = Counter()
    latencies: list[float] = []
    retry_after: set[str] = set()
    deadline = time.monotonic() + seconds
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=client_timeout) as client:
        async def worker() -> None:
            nonlocal sent
            while sent < n and time.monotonic() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    statuses[r.status_code] += 1
                    if r.status_code == 503:
                        retry_after.add(r.headers.get("retry-after", "missing"))
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.monotonic() - start
    lat = np.array(latencies) * 1000
    other_5xx = {k: v for k, v in statuses.items() if isinstance(k, int) and k >= 500 and k != 503}
    return {
        "path": path, "concurrency": concurrency, "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "held": set(statuses) == {200}, "other_5xx_or_errors": sum(other_5xx.values()) + sum(
            v for k, v in statuses.items() if not isinstance(k, int)),
        "retry_after": sorted(retry_after), "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "ok_per_s": round(len(lat) / wall, 2), "wall_s": round(wall, 1), "server_rss_mb": round(_rss_mb(pid), 1),
    }


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(
    search_levels: Annotated[str, typer.Option(help="Concurrency levels for /search, comma-separated.")] = "1,4,16,64",
    ask_levels: Annotated[str, typer.Option(help="Concurrency levels for /ask ('' to skip).")] = "1,2,4,8",
    requests: Annotated[int, typer.Option(min=1, help="Requests per /search level (at most).")] = 200,
    ask_requests: Annotated[int, typer.Option(min=0, help="Requests per /ask level (at most; the model is slow). "
                                                       "0: one wave, as many as the level's concurrency.")] = 0,
    level_seconds: Annotated[float, typer.Option(min=1, help="Time bound of one level.")] = 120,
    client_timeout: Annotated[float, typer.Option(help="A request not answered by then counts as a hang.")] = 300,
    max_concurrent_asks: Annotated[int, typer.Option(help="The server's --max-concurrent-asks.")] = 2,
    ask_queue_timeout: Annotated[float, typer.Option(help="The server's --ask-queue-timeout.")] = 2.0,
    request_timeout: Annotated[float, typer.Option(help="The server's --request-timeout (504 after it).")] = 120.0,
    work: Annotated[Path | None, typer.Option(help="Folder for the samples index (default: a temp folder).")] = None,
) -> None:
    """Run the load test; print one JSON object with a row per level."""
    scratch = None
    if work is None:
        scratch = tempfile.TemporaryDirectory(prefix="rag-load-")
        work = Path(scratch.name)
    index_dir = work / "index"
    samples_index(work)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rag_runtime", "serve", "--index", str(index_dir), "--port", str(port),
         "--max-concurrent-asks", str(max_concurrent_asks), "--ask-queue-timeout", str(ask_queue_timeout),
         "--request-timeout", str(request_timeout)],
        env={k: v for k, v in os.environ.items() if k != "RAG_API_KEY"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:] if server.stderr else ''}")
            time.sleep(0.5)
        rss_start = _rss_mb(server.pid)
        searches = [{"query": q, "k": 10} for q in SEARCHES]
        for c in _levels(search_levels):
            rows.append(asyncio.run(level(url, "/search", searches, c, requests, level_seconds, client_timeout, server.pid)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        asks = [{"question": q} for q in ASKS]
        for c in _levels(ask_levels):
            rows.append(asyncio.run(level(url, "/ask", asks, c, ask_requests or c, level_seconds, client_timeout, server.pid)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        print(json.dumps({"server_rss_mb_at_start": round(rss_start, 1), "max_concurrent_asks": max_concurrent_asks,
                          "ask_queue_timeout_s": ask_queue_timeout, "request_timeout_s": request_timeout,
                          "levels": rows}, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    typer.run(main)
