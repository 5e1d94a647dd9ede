"""Model-layer benchmarks on the default offline model (SmolLM2-135M-Instruct).

1. throughput: 16 concurrent structured-output agent runs, micro-batched, versus the same 16 runs
   one at a time (each awaited before the next), in one process, same prompts, same model.
2. memory: peak RSS of a process where five agents share the registry (offline profile), versus
   five separately loaded copies of the model, versus a single model; each in a fresh subprocess.
3. load time: first conversion of the GGUF (into an empty cache folder) and the cached reload.

    python bench/bench_model_layer.py [--part throughput|memory|load|all] [--runs 16]

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from pydantic import BaseModel, Field

TOPICS = [
    "photosynthesis", "the French revolution", "black holes", "honey bees", "the printing press",
    "volcanoes", "vaccines", "the Roman empire", "coral reefs", "jazz music", "glaciers", "bridges",
    "the internet", "chess", "tea", "solar panels", "earthquakes", "the moon", "penguins", "paper",
]


class Card(BaseModel):
    title: str = Field(max_length=60)
    facts: list[str] = Field(max_length=2)
    difficulty: int = Field(ge=1, le=5)


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _throughput(n: int) -> dict:
    from pydantic_ai import Agent

    from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
    from liquid_shared.offline import SMOLLM2_ID

    prompts = [f"Make a study card about {TOPICS[i % len(TOPICS)]}." for i in range(n)]
    out = {}
    for mode in ("sequential", "batched"):
        registry = ModelRegistry(budget_bytes=8 * 2**30)
        spec = ModelSpec(model=SMOLLM2_ID, max_batch_size=16 if mode == "batched" else 1)
        agent = Agent(LiquidModel(spec, registry=registry), output_type=Card, instructions="Write a study card.")
        await agent.run("warm-up")  # load + grammar compile outside the timing
        t0 = time.perf_counter()
        if mode == "sequential":
            results = [await agent.run(p) for p in prompts]
        else:
            results = await asyncio.gather(*(agent.run(p) for p in prompts))
        dt = time.perf_counter() - t0
        tokens = sum(r.usage().output_tokens for r in results)
        out[mode] = {"seconds": dt, "runs_per_min": 60 * n / dt, "output_tokens": tokens, "tokens_per_s": tokens / dt,
                     "valid": sum(isinstance(r.output, Card) for r in results)}
    out["speedup"] = out["sequential"]["seconds"] / out["batched"]["seconds"]
    return out


def _memory_child(mode: str) -> dict:
    from pydantic_ai import Agent

    from liquid_shared.models import LiquidModel, ModelRegistry, get_profile

    spec = get_profile("offline").spec_for("qa")
    base = _rss_peak_mib()
    if mode == "single":
        agents = [Agent(LiquidModel(spec, registry=ModelRegistry(8 * 2**30)))]
    elif mode == "shared":
        reg = ModelRegistry(8 * 2**30)
        profile = get_profile("offline")
        agents = [Agent(LiquidModel(profile.spec_for(s), registry=reg))
                  for s in ("chunking", "metadata", "summary", "qa", "validation")]
    else:  # five copies, as five agents each loading their own model would
        agents = [Agent(LiquidModel(spec, registry=ModelRegistry(8 * 2**30))) for _ in range(5)]

    async def go():
        return await asyncio.gather(*(a.run("Say hi.", model_settings={"max_tokens": 8}) for a in agents))

    asyncio.run(go())
    return {"mode": mode, "peak_rss_mib": _rss_peak_mib(), "baseline_mib": base}


def _memory() -> dict:
    res = {}
    for mode in ("single", "shared", "copies"):
        p = subprocess.run([sys.executable, __file__, "--memory-child", mode], capture_output=True, text=True, check=True)
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    single = res["single"]["peak_rss_mib"]
    res["shared_over_single"] = res["shared"]["peak_rss_mib"] / single
    res["copies_over_single"] = res["copies"]["peak_rss_mib"] / single
    return res


def _load() -> dict:
    code = (
        "import time,sys; t=time.perf_counter();"
        "from liquid_shared.models import ModelRegistry, ModelSpec; from liquid_shared.offline import SMOLLM2_ID;"
        "t1=time.perf_counter(); ModelRegistry(2**32).get(ModelSpec(model=SMOLLM2_ID));"
        "print(time.perf_counter()-t1)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, LIQUID_CACHE_DIR=cache)
        first = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()[-1])
        again = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()[-1])
    return {"first_conversion_s": first, "cached_reload_s": again}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["throughput", "memory", "load", "all"])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child)))
        return
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    if args.part in ("throughput", "all"):
        t = asyncio.run(_throughput(args.runs))
        print(f"\n## {args.runs} concurrent structured-output agent runs (SmolLM2-135M, CPU)\n")
        print("| mode | wall s | runs/min | output tokens/s | valid |\n|---|---|---|---|---|")
        for mode in ("sequential", "batched"):
            r = t[mode]
            print(f"| {mode} | {r['seconds']:.1f} | {r['runs_per_min']:.1f} | {r['tokens_per_s']:.1f} | "
                  f"{r['valid']}/{args.runs} |")
        print(f"\nbatched / one-at-a-time speedup: **{t['speedup']:.2f}x**")
    if args.part in ("memory", "all"):
        m = _memory()
        print("\n## Peak RSS: five agents (offline profile) vs five copies vs one model\n")
        print("| setup | peak RSS MiB | / single |\n|---|---|---|")
        print(f"| one agent, one model | {m['single']['peak_rss_mib']:.0f} | 1.00 |")
        print(f"| five agents, shared registry | {m['shared']['peak_rss_mib']:.0f} | {m['shared_over_single']:.2f} |")
        print(f"| five agents, five copies | {m['copies']['peak_rss_mib']:.0f} | {m['copies_over_single']:.2f} |")
    if args.part in ("load", "all"):
        ld = _load()
        print("\n## Load time of the default model (imports excluded)\n")
        print(f"| first load (GGUF conversion) | {ld['first_conversion_s']:.1f} s |\n|---|---|\n"
              f"| cached reload | {ld['cached_reload_s']:.1f} s |")


if __name__ == "__main__":
    main()
