"""Benchmark: ``/search`` latency and the server's memory while ``serve`` reloads its index.

    .venv/bin/python bench/bench_reload.py --index /tmp/scifact-index      # an index built with build-index
    .venv/bin/python bench/bench_reload.py --index IDX --concurrency 4 --steady 10 --reloads 3

Copies ``--index`` into a temporary folder, starts ``python -m rag_runtime serve`` on it (127.0.0.1,
a free port, an API key, no watcher) as a separate process, and keeps ``--concurrency`` clients
sending ``POST /search`` (hybrid, k=10, the SciFact test queries in turn when the index's source
has them, else a fixed query) without pause. After ``--steady`` seconds it calls ``POST
/admin/reload`` ``--reloads`` times, ``--steady`` seconds apart. Each request is timed on the
client. Reported per server setting (the default swap, which holds both versions during the load,
and ``--reload-low-memory``, which drops the old one first and answers 503 meanwhile):

* steady p50/p99: requests that ended before the first reload started;
* window p99 and its ratio to the steady p99: requests that overlapped a reload (start before its
  end and end after its start, plus 0.5 s either side);
* requests served (200) and refused (503) while a reload ran; any other status is an error;
* the server's resident memory (RSS, sampled every 10 ms from /proc) before the reloads and its
  peak during them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

KEY = "bench-reload-key"
VARIANTS = [("default swap (both versions in memory during the load)", []),
            ("--reload-low-memory (old one dropped first; 503 meanwhile)", ["--reload-low-memory"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queries_for(index: Path) -> list[str]:
    source = json.loads((index / "manifest.json").read_text()).get("source")
    path = Path(source or "") / "queries.jsonl"
    if source and path.exists():
        return [json.loads(line)["text"] for line in path.read_text().splitlines()[:300]]
    return ["what causes inflammation?"]


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.01):
        super().__init__(daemon=True)
        self.process, self.every_s = psutil.Process(pid), every_s
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.perf_counter(), self.process.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(self.every_s)

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def start_server(index: Path, extra: list[str], log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAG_API_KEY": KEY}
    server = subprocess.Popen([sys.executable, "-m", "rag_runtime", "serve", "--index", str(index), "--port", str(port),
                               "--reload-interval", "0", *extra], env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the server did not start (its stderr is in the log file)")
        time.sleep(0.2)


def run_variant(index: Path, extra: list[str], queries: list[str], args, log) -> dict:
    server, url = start_server(index, extra, log)
    try:
        return asyncio.run(measure(server.pid, url, queries, args))
    finally:
        server.terminate()
        server.wait(30)


async def measure(pid: int, url: str, queries: list[str], args) -> dict:
    sampler = RssSampler(pid)
    sampler.start()
    records: list[tuple[float, float, int]] = []
    reloads: list[tuple[float, float, dict]] = []
    stop = asyncio.Event()
    headers = {"X-API-Key": KEY}

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = n
        while not stop.is_set():
            start = time.perf_counter()
            try:
                r = await http.post("/search", json={"query": queries[i % len(queries)], "k": 10})
                status = r.status_code
            except httpx.HTTPError:
                status = -1
            records.append((start, time.perf_counter(), status))
            i += args.concurrency

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=args.concurrency + 2)) as http:
        for q in queries[:20]:  # warm-up, untimed
            await http.post("/search", json={"query": q, "k": 10})
        tasks = [asyncio.create_task(client(n, http)) for n in range(args.concurrency)]
        before = time.perf_counter()
        await asyncio.sleep(args.steady)
        rss_before = int(np.median([rss for t, rss in sampler.samples if before <= t]))
        for _ in range(args.reloads):
            t0 = time.perf_counter()
            r = await http.post("/admin/reload", timeout=300)
            reloads.append((t0, time.perf_counter(), r.json()))
            await asyncio.sleep(args.steady)
        stop.set()
        await asyncio.gather(*tasks)
    sampler.stop.set()
    sampler.join()

    first = reloads[0][0]
    steady = [(e - s) * 1000 for s, e, st in records if e < first and st == 200]
    pad = 0.5
    window = [(e - s) * 1000 for s, e, st in records if st == 200
              and any(s < t1 + pad and e > t0 - pad for t0, t1, _ in reloads)]
    during = [st for s, e, st in records if any(t0 <= s <= t1 for t0, t1, _ in reloads)]
    statuses = [st for _, _, st in records]
    return {
        "requests": len(records),
        "errors": sum(1 for st in statuses if st not in (200, 503)),
        "steady_p50_ms": float(np.percentile(steady, 50)), "steady_p99_ms": float(np.percentile(steady, 99)),
        "window_p99_ms": float(np.percentile(window, 99)) if window else float("nan"),
        "served_during_reloads": during.count(200), "refused_503_during_reloads": during.count(503),
        "reload_s": [round(t1 - t0, 2) for t0, t1, _ in reloads],
        "reload_status": [o["status"] for _, _, o in reloads],
        "rss_before_mb": rss_before / 2**20,
        "rss_peak_mb": max(sampler.peak(t0, t1 + 0.2) for t0, t1, _ in reloads) / 2**20,
    }


def footprint(index: Path) -> dict:
    """What one more loaded version of ``index`` costs in this process: Python-traced bytes retained
    (numpy arrays included), FAISS's vectors (C++, not traced), and the RSS growth."""
    import gc
    import tracemalloc

    from rag_runtime import RagIndex

    process = psutil.Process()
    first = RagIndex.load(index)
    if first.dense is not None:
        first.dense.encode_queries(["warm-up"])  # the encoder is shared by both versions
    gc.collect()
    rss = process.memory_info().rss
    tracemalloc.start()
    second = RagIndex.load(index)
    gc.collect()
    traced, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    faiss_bytes = second.dense.index.ntotal * second.dense.index.d * 4 if second.dense is not None else 0
    return {"traced_mb": traced / 2**20, "traced_peak_mb": peak / 2**20, "faiss_vectors_mb": faiss_bytes / 2**20,
            "rss_growth_mb": (process.memory_info().rss - rss) / 2**20, "documents": len(second.store)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="Index folder (made by build-index) to serve and reload.")
    parser.add_argument("--concurrency", type=int, default=4, help="Clients searching without pause.")
    parser.add_argument("--steady", type=float, default=8.0, help="Seconds before the first reload and between reloads.")
    parser.add_argument("--reloads", type=int, default=3, help="Reloads per server setting.")
    parser.add_argument("-o", "--output", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    if not (args.index / "manifest.json").exists():
        parser.error(f"--index {args.index}: no manifest.json; build one with `liquid rag build-index`")
    queries = queries_for(args.index)
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} at start")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "index"
        shutil.copytree(args.index, copy)
        log = (Path(tmp) / "server.log").open("w")
        for name, extra in VARIANTS:
            res = run_variant(copy, extra, queries, args, log)
            results[name] = res
            ratio = res["window_p99_ms"] / res["steady_p99_ms"]
            print(f"\n{name}\n  requests {res['requests']}, errors {res['errors']}, reloads {res['reload_status']} "
                  f"in {res['reload_s']} s\n  steady p50 {res['steady_p50_ms']:.1f} ms, p99 {res['steady_p99_ms']:.1f} ms; "
                  f"window p99 {res['window_p99_ms']:.1f} ms (ratio {ratio:.2f})\n  during reloads: "
                  f"{res['served_during_reloads']} served, {res['refused_503_during_reloads']} refused (503)\n"
                  f"  server RSS {res['rss_before_mb']:.0f} MB before, peak {res['rss_peak_mb']:.0f} MB during reloads "
                  f"(+{res['rss_peak_mb'] - res['rss_before_mb']:.0f} MB)")
    size = footprint(args.index)
    results["one more loaded version"] = size
    print(f"\none more loaded version of the index ({size['documents']} documents): {size['traced_mb']:.1f} MB Python-traced "
          f"(peak {size['traced_peak_mb']:.1f} MB while loading) + {size['faiss_vectors_mb']:.1f} MB FAISS vectors; "
          f"RSS +{size['rss_growth_mb']:.0f} MB")
    print(f"\n# load average {os.getloadavg()[0]:.2f} at end")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
