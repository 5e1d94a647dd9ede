"""Benchmark: the HTTP service under load on loopback: p50/p95 latency, throughput, errors.

    .venv/bin/python bench/bench_rag_service.py                      # SciFact index, 2,000 requests, 32 at once
    .venv/bin/python bench/bench_rag_service.py --requests 500 --concurrency 8 --mode bm25

Builds (once, into ``--workdir``) an index of BEIR SciFact, or of a small generated corpus when
SciFact is absent; starts ``python -m rag_runtime serve`` as a separate process on 127.0.0.1 and a
free port; sends ``--requests`` ``POST /search`` requests (the 300 SciFact test queries in turn,
k=10) with ``--concurrency`` in flight from an httpx AsyncClient; times each request on the client.
It does this for three server settings: the default (each request encodes its own query; torch's
default intra-op threads, 2 here), ``--torch-threads 1``, and ``--batch-queries --torch-threads 1``
(``BatchingEncoder``: one thread encodes the queries of concurrent requests together). 50 untimed
requests warm each server up first. Besides the
client-side latencies, the server process's CPU time (user + system, psutil) per request is
reported: on a shared machine wall-clock figures depend on the other load, CPU time much less.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCIFACT = Path(os.environ.get("LIQUID_DATA_DIR", ROOT.parent / "shared" / "data")) / "beir" / "scifact"


VARIANTS = [
    ("default: one encode per request, torch's threads", []),
    ("--torch-threads 1", ["--torch-threads", "1"]),
    ("--batch-queries --torch-threads 1", ["--batch-queries", "--torch-threads", "1"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_index(workdir: Path, scifact: Path) -> tuple[Path, list[str]]:
    from rag_runtime import RagIndex, build_index

    out = workdir / "scifact-index"
    if (scifact / "corpus.jsonl").is_file():
        from liquid_shared.data import load_beir

        queries = list(load_beir(scifact, split="test").queries.values())
        if not (out / "manifest.json").is_file():
            build_index(scifact, out)
        return out, queries
    from rag_runtime import IndexedDoc

    out = workdir / "generated-index"
    words = ["galaxy", "bread", "interest", "vaccine", "football", "compiler", "orbit", "sauce", "bond", "insulin"]
    docs = [IndexedDoc(id=f"d{i}", text=" ".join(words[(i + j) % len(words)] for j in range(8))) for i in range(500)]
    if not (out / "manifest.json").is_file():
        RagIndex.build(docs).save(out)
    return out, [f"{a} {b}" for a, b in itertools.permutations(words, 2)]


def start_server(index: Path, port: int, options: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "liquid-shared-core"), str(ROOT / "liquid-rag-runtime"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "rag_runtime", "serve", "--index", str(index), "--port", str(port), *options]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 300 s")


async def load(url: str, queries: list[str], n: int, concurrency: int, mode: str) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    it = itertools.cycle(queries)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def worker(count: int) -> None:
            for _ in range(count):
                body = {"query": next(it), "k": 10, "mode": mode}
                t0 = time.perf_counter()
                try:
                    r = await client.post("/search", json=body)
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - t0)

        per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in per))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "liquid-bench-rag")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", default="hybrid", choices=["hybrid", "bm25", "dense"])
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    index, queries = ensure_index(args.workdir, args.scifact)

    rows = []
    for label, options in VARIANTS:
        port = free_port()
        proc = start_server(index, port, options)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, queries, 50, min(8, args.concurrency), args.mode))
            load_avg = os.getloadavg()[0]
            server = psutil.Process(proc.pid)
            cpu0 = sum(server.cpu_times()[:2])
            lat, errors, wall = asyncio.run(load(url, queries, args.requests, args.concurrency, args.mode))
            cpu_ms = (sum(server.cpu_times()[:2]) - cpu0) / args.requests * 1000
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        ms = np.asarray(lat) * 1000
        rows.append((label, np.percentile(ms, 50), np.percentile(ms, 95), np.percentile(ms, 99),
                     args.requests / wall, cpu_ms, len(errors), load_avg))
        if errors:
            print(f"{label}: errors {collections.Counter(errors).most_common()}", file=sys.stderr)

    print(f"# /search ({args.mode}, k=10) on {index.name}: {args.requests} requests, concurrency {args.concurrency}, "
          f"uvicorn in its own process on 127.0.0.1; python {platform.python_version()}, {os.cpu_count()} CPUs")
    print()
    print("| server | p50 (ms) | p95 (ms) | p99 (ms) | requests/s | server CPU ms/request | errors | load avg at start |")
    print("|---|---|---|---|---|---|---|---|")
    for label, p50, p95, p99, rps, cpu, n_err, la in rows:
        print(f"| {label} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {rps:.1f} | {cpu:.1f} | {n_err} | {la:.1f} |")
    print()
    for row in rows[1:]:
        print(f"{row[0]} versus the default: throughput {row[4] / rows[0][4]:.2f}x, "
              f"server CPU per request {row[5] / rows[0][5]:.2f}x")


if __name__ == "__main__":
    main()
