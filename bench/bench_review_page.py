"""Benchmark: page latency per judgment on the review page, 5 reviewers at once, in headless Chromium.

    .venv/bin/python bench/bench_review_page.py                     # a generated run of 600 pairs
    .venv/bin/python bench/bench_review_page.py --run data/runs/samples-offline --judgments 20

The review server (``python -m rag_runtime review serve``, uvicorn) runs in its own process over a
run folder (``--run``, or a generated one of ``--pairs`` pairs written with the shared schemas into
a temporary folder), judgments in a temporary SQLite file. One Chromium (Debian's, through
Playwright) opens ``--reviewers`` contexts, one per reviewer; all of them press keys at once
(asyncio), ``--judgments`` judgments each (accept/reject/skip in turn). The page itself measures
each judgment: from the key press (``keydown``) to the next frame after the next pair is on screen
(``requestAnimationFrame``), so the figure is what a person waits for: the POST, SQLite's write,
choosing the next pair, the JSON and the render.

The named alternative, in the same run: the same judgment round trip without a browser, the same
number of reviewers posting ``/api/review/judgments`` at once from threads with httpx (the API's
own latency). The ratio page/API is what the page adds on top of its API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = os.environ.get("LIQUID_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VERDICTS = ("a", "r", "a", "s")


def generated_run(folder: Path, n_pairs: int) -> Path:
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult

    folder.mkdir(parents=True, exist_ok=True)
    chunks, pairs, verdicts = [], [], []
    for i in range(n_pairs // 2):
        text = (f"Passage {i}. The river number {i} floods every {i % 12 + 1} years, and the town beside it "
                f"built a wall of {i * 3 % 97 + 3} metres. " * 3).strip()
        chunks.append(Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 10}", text=text, position=i % 10))
        for j, (q, a) in enumerate(((f"How often does river {i} flood?", f"every {i % 12 + 1} years"),
                                    (f"How high is the wall by river {i}?", f"{i * 3 % 97 + 3} metres"))):
            pairs.append(QAPair(qa_id=f"q{i}-{j}", chunk_id=f"c{i}", doc_id=f"d{i // 10}", question=q, answer=a))
            verdicts.append(ValidationResult(qa_id=f"q{i}-{j}", valid=(i + j) % 3 != 0, grounded=True, grounding_score=0.9))
    for name, records in (("chunks.jsonl", chunks), ("qa_pairs.jsonl", pairs), ("validation.jsonl", verdicts)):
        (folder / name).write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, db: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "rag_runtime", "review", "serve", str(run), "--db", str(db),
                             "--port", str(port), "--overlap", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/review/info", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"review server exited: {proc.stderr.read().decode()[-2000:]}")
    raise SystemExit("review server did not start in 120 s")


async def poll(page, js: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await page.evaluate(js):
        if time.monotonic() > deadline:
            raise TimeoutError(js)
        await asyncio.sleep(0.02)


async def reviewer(browser, url: str, name: str, judgments: int) -> list[float]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{url}/review")
    await page.fill("#reviewer-name", name)
    await page.click("#start-btn")
    await poll(page, "document.body.dataset.qaId")
    for i in range(judgments):
        await page.keyboard.press(VERDICTS[i % len(VERDICTS)])
        await page.wait_for_selector(f"body[data-judged='{i + 1}']", state="attached", timeout=60_000)
    timings = await page.evaluate("window.__reviewTimings")
    await context.close()
    return timings


async def browser_run(url: str, reviewers: int, judgments: int) -> list[float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        results = await asyncio.gather(*(reviewer(browser, url, f"page-reviewer-{r}", judgments) for r in range(reviewers)))
        await browser.close()
    return [t for ts in results for t in ts]


def api_run(url: str, reviewers: int, judgments: int) -> list[float]:
    import httpx

    out: list[float] = []
    lock = threading.Lock()
    verdicts = ("accept", "reject", "accept", "skip")

    def one(r: int) -> None:
        name = f"api-reviewer-{r}"
        with httpx.Client(base_url=url, timeout=30) as c:
            pair = c.post("/api/review/next", json={"reviewer": name}).json()["pair"]
            for i in range(judgments):
                start = time.perf_counter()
                res = c.post("/api/review/judgments", json={"reviewer": name, "qa_id": pair["qa_id"], "verdict": verdicts[i % 4]})
                res.raise_for_status()
                pair = res.json()["next"]
                with lock:
                    out.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=one, args=(r,)) for r in range(reviewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="ETL run folder (default: a generated one)")
    parser.add_argument("--pairs", type=int, default=600, help="pairs of the generated run")
    parser.add_argument("--reviewers", type=int, default=5)
    parser.add_argument("--judgments", type=int, default=40, help="judgments per reviewer")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or generated_run(Path(tmp) / "run", args.pairs)
        port = free_port()
        server = start_server(run, Path(tmp) / "judgments.sqlite", port)
        url = f"http://127.0.0.1:{port}"
        try:
            api_run(url, 1, 5)  # warm-up
            page_ms = asyncio.run(browser_run(url, args.reviewers, args.judgments))
            api_ms = api_run(url, args.reviewers, args.judgments)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "reviewers": args.reviewers, "judgments_per_reviewer": args.judgments, "run": str(args.run or f"generated, {args.pairs} pairs"),
        "page_ms": {"p50": pct(page_ms, 50), "p95": pct(page_ms, 95), "max": max(page_ms), "n": len(page_ms)},
        "api_ms": {"p50": pct(api_ms, 50), "p95": pct(api_ms, 95), "max": max(api_ms), "n": len(api_ms)},
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    result["ratio_p95_page_over_api"] = result["page_ms"]["p95"] / result["api_ms"]["p95"]
    print(json.dumps(result, indent=2))
    print(f"\npage latency per judgment, {args.reviewers} reviewers at once: p50 {result['page_ms']['p50']:.1f} ms, "
          f"p95 {result['page_ms']['p95']:.1f} ms (goal p95 < 100 ms: {'met' if result['page_ms']['p95'] < 100 else 'not met'}); "
          f"API alone p50 {result['api_ms']['p50']:.1f} ms, p95 {result['api_ms']['p95']:.1f} ms; page/API at p95 {result['ratio_p95_page_over_api']:.2f}x")


if __name__ == "__main__":
    main()
