"""One compute thread versus torch work spread over threads: the cost of a decode step.

    python bench/bench_compute_thread.py [--dtypes int8,fp32] [--steps 40]

Each case runs in a fresh subprocess (OpenMP's thread teams live as long as the process):

* *one thread*: the model is loaded and every decode step runs on one thread (what
  ``liquid_shared.compute_thread`` does for the model layer);
* *two threads*: the model is loaded on the main thread and the steps run on a worker thread
  (what ``asyncio.to_thread`` did before: the loading thread and the decoding thread differ).

Both decode single-row steps of SmolLM2-135M on a 120-token cache, median of ``--steps`` steps,
three bursts each. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "liquid-shared-core"))


def _load(dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    from liquid_shared.models.quantize import int8_linear_layers
    from liquid_shared.offline import ensure_smollm2

    model = AutoModelForCausalLM.from_pretrained(ensure_smollm2(), dtype=torch.float32).eval()
    return int8_linear_layers(model) if dtype == "int8" else model


def _burst(model, steps: int) -> float:
    import torch

    torch.manual_seed(0)
    with torch.inference_mode():
        cache = model(input_ids=torch.randint(0, 49000, (1, 120)), use_cache=True, logits_to_keep=1).cache
        spans = []
        for _ in range(steps):
            t0 = time.perf_counter()
            cache = model(input_ids=torch.randint(0, 49000, (1, 1)), use_cache=True, cache=cache,
                          logits_to_keep=1).cache
            spans.append(time.perf_counter() - t0)
    return statistics.median(spans) * 1000


def _child(case: str, dtype: str, steps: int) -> None:
    worker = ThreadPoolExecutor(max_workers=1)
    model = worker.submit(_load, dtype).result() if case == "one thread" else _load(dtype)
    bursts = [worker.submit(_burst, model, steps).result() for _ in range(3)]
    print(json.dumps({"ms": statistics.median(bursts), "bursts": bursts}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", default="int8,fp32", help="comma-separated: int8 (int8 linear layers), fp32")
    ap.add_argument("--steps", type=int, default=40, help="decode steps per burst (default 40)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.steps)
        return
    rows = []
    for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        res = {}
        for case in ("one thread", "two threads"):
            out = subprocess.run([sys.executable, __file__, "--child", case, dtype, "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True).stdout
            res[case] = json.loads(out.strip().splitlines()[-1])
        rows.append((dtype, res))
    print(f"\n{platform.machine()}, one decode step of SmolLM2-135M (1 row, 120-token cache), median ms\n")
    print("| weights | one thread (load + steps) | two threads (load on main, steps on a worker) | two / one |")
    print("|---|---:|---:|---:|")
    for dtype, res in rows:
        one, two = res["one thread"]["ms"], res["two threads"]["ms"]
        print(f"| {dtype} | {one:.1f} | {two:.1f} | {two / one:.2f}x |")


if __name__ == "__main__":
    main()
