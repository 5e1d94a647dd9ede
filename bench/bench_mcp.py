"""Benchmark: MCP ``search`` (streamable HTTP at /mcp, and stdio) against ``POST /search``, and
``/v1/chat/completions`` against ``/ask``, on the same index and queries.

    .venv/bin/python bench/bench_mcp.py                       # SciFact index, 300 searches, 20 answers
    .venv/bin/python bench/bench_mcp.py --searches 100 --answers 0

Builds (once, into ``--workdir``) an index of BEIR SciFact (the small generated corpus of
bench_rag_service when SciFact is absent); starts ``python -m rag_runtime serve`` (extractive
answers, the offline model) and ``python -m rag_runtime mcp`` (stdio) as separate processes. One
request at a time, the three search paths take turns on each query (so a change in machine load
hits all three alike), k=10, hybrid; each client keeps its connection or session open (httpx
keep-alive; one FastMCP ``Client`` session per transport). Times are taken on the client, and
include the client's own decoding (FastMCP validates the result). The answers part sends the
same SciFact questions to ``/ask`` and to the chat API (``liquid-rag``), in turns, and checks the
answers are the same. Prints p50/p95 per path and the ratios of medians; the goal for MCP is
within 1.2x of ``/search``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rag_service import DEFAULT_SCIFACT, ROOT, ensure_index, free_port, start_server  # noqa: E402

GOAL = 1.2


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "liquid-shared-core"), str(ROOT / "liquid-rag-runtime"), os.environ.get("PYTHONPATH", "")])}


def _ms(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


async def bench_search(url: str, index: Path, queries: list[str]) -> dict[str, list[float]]:
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

    times: dict[str, list[float]] = {"POST /search": [], "MCP search, streamable HTTP": [], "MCP search, stdio": []}
    stdio = StdioTransport(sys.executable, ["-m", "rag_runtime", "mcp", "--index", str(index)], env=_env())
    async with httpx.AsyncClient(base_url=url, timeout=120) as http, \
            Client(StreamableHttpTransport(f"{url}/mcp")) as mcp_http, Client(stdio) as mcp_stdio:
        async def rest(q: str) -> list[str]:
            r = await http.post("/search", json={"query": q, "k": 10})
            r.raise_for_status()
            return [h["id"] for h in r.json()["hits"]]

        async def over(client, q: str) -> list[str]:
            result = await client.call_tool("search", {"query": q, "k": 10})
            return [h["id"] for h in result.structured_content["results"]]

        calls = {"POST /search": rest, "MCP search, streamable HTTP": lambda q: over(mcp_http, q),
                 "MCP search, stdio": lambda q: over(mcp_stdio, q)}
        names = list(calls)
        for q in queries[:20]:  # warm-up: the stdio server loads its index on its first call
            for name in names:
                await calls[name](q)
        for i, q in enumerate(queries):
            ids = {}
            for name in names[i % 3:] + names[:i % 3]:  # rotate who goes first
                t0 = time.perf_counter()
                ids[name] = await calls[name](q)
                times[name].append(time.perf_counter() - t0)
            if len({tuple(v) for v in ids.values()}) != 1:
                raise SystemExit(f"the three paths disagree on {q!r}: {ids}")
    return times


async def bench_answers(url: str, questions: list[str]) -> tuple[dict[str, list[float]], int]:
    times: dict[str, list[float]] = {"POST /ask": [], "POST /v1/chat/completions": []}
    same = 0
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await http.post("/ask", json={"question": questions[0]})  # loads the model
        for i, q in enumerate(questions):
            answers = {}
            order = ["POST /ask", "POST /v1/chat/completions"][:: 1 if i % 2 == 0 else -1]
            for name in order:
                t0 = time.perf_counter()
                if name == "POST /ask":
                    r = await http.post("/ask", json={"question": q})
                    r.raise_for_status()
                    answers[name] = r.json()["answer"]
                else:
                    r = await http.post("/v1/chat/completions",
                                        json={"model": "liquid-rag", "messages": [{"role": "user", "content": q}]})
                    r.raise_for_status()
                    answers[name] = r.json()["rag"]["answer"]
                times[name].append(time.perf_counter() - t0)
            same += answers["POST /ask"] == answers["POST /v1/chat/completions"]
    return times, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "liquid-bench-rag")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--answers", type=int, default=20)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    index, queries = ensure_index(args.workdir, args.scifact)
    queries = [queries[i % len(queries)] for i in range(args.searches)]

    port = free_port()
    proc = start_server(index, port, ["--style", "extractive"])
    try:
        url = f"http://127.0.0.1:{port}"
        load_start = os.getloadavg()[0]
        search_times = asyncio.run(bench_search(url, index, queries))
        answer_times, same = asyncio.run(bench_answers(url, queries[:args.answers])) if args.answers else ({}, 0)
        load_end = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"# {index.name}: {args.searches} searches (hybrid, k=10) and {args.answers} extractive answers, one at a "
          f"time; python {platform.python_version()}, {os.cpu_count()} CPUs; load average {load_start:.1f} at start, "
          f"{load_end:.1f} at end")
    print()
    print("| path | p50 (ms) | p95 (ms) | p50 / baseline |")
    print("|---|---|---|---|")
    base = _ms(search_times["POST /search"])[0]
    for name, values in search_times.items():
        p50, p95 = _ms(values)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f}x |")
    if answer_times:
        base = _ms(answer_times["POST /ask"])[0]
        for name, values in answer_times.items():
            p50, p95 = _ms(values)
            print(f"| {name} | {p50:.0f} | {p95:.0f} | {p50 / base:.2f}x |")
    print()
    for name in ("MCP search, streamable HTTP", "MCP search, stdio"):
        ratio = _ms(search_times[name])[0] / _ms(search_times["POST /search"])[0]
        print(f"{name}: {ratio:.2f}x the p50 of /search (goal {GOAL}x: {'met' if ratio <= GOAL else 'not met'})")
    if answer_times:
        print(f"same answer from /ask and the chat API: {same}/{args.answers}")


if __name__ == "__main__":
    main()
