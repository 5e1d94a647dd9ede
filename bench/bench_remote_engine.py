"""In-process engine versus llama.cpp's ``llama-server``, same model (SmolLM2-135M-Instruct: the
bundled GGUF served by llama-server; the same weights dequantised to fp32 in process), same run.

1. agents: 16 concurrent structured-output agent runs (``bench_model_layer.py``'s Card schema and
   prompts) through the server (``--parallel 16`` slots) versus through our in-process batcher.
2. etl: ``run_etl`` on the shipped samples (``--limit``/``--max-chunks-per-doc`` keep it short) with
   ``--profile offline`` (in process) versus ``--profile remote`` (the server): wall time, output
   tokens per second from the run's usage, records valid.

    python bench/bench_remote_engine.py [--part agents|etl|all] [--runs 16] [--limit 2]

Needs the ``llama-server`` binary (``make install`` / ``scripts/build_llama_server.sh``). Prints a
markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model_layer import TOPICS, Card  # noqa: E402  (same schema and prompts)

REPO = Path(__file__).resolve().parents[1]


async def _agents(n: int, server) -> dict:
    from pydantic_ai import Agent

    from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
    from liquid_shared.offline import SMOLLM2_ID

    prompts = [f"Make a study card about {TOPICS[i % len(TOPICS)]}." for i in range(n)]
    specs = {
        "in-process batcher": ModelSpec(model=SMOLLM2_ID, max_batch_size=16, temperature=0.0),
        "llama-server": ModelSpec(model=server.alias, backend="openai", base_url=server.base_url,
                                  max_batch_size=16, temperature=0.0),
    }
    out = {}
    for name, spec in specs.items():
        agent = Agent(LiquidModel(spec, registry=ModelRegistry(budget_bytes=8 * 2**30)), output_type=Card,
                      instructions="Write a study card.")
        await agent.run("warm-up")  # load + grammar compile outside the timing
        t0 = time.perf_counter()
        results = await asyncio.gather(*(agent.run(p) for p in prompts), return_exceptions=True)
        dt = time.perf_counter() - t0
        ok = [r for r in results if not isinstance(r, BaseException)]
        tokens = sum(r.usage.output_tokens for r in ok)
        out[name] = {"seconds": dt, "valid": sum(isinstance(r.output, Card) for r in ok), "runs": n,
                     "output_tokens": tokens, "tokens_per_s": tokens / dt}
    return out


def _etl(limit: int, server) -> dict:
    out = {}
    env = {**os.environ, "LIQUID_OPENAI_BASE_URL": server.base_url, "LIQUID_OPENAI_MODEL": server.alias,
           "LIQUID_OPENAI_MAX_CONCURRENCY": "16"}
    for profile in ("offline", "remote"):
        folder = Path(tempfile.mkdtemp(prefix=f"etl-{profile}-"))
        cmd = [sys.executable, "-m", "etl_pipeline.run_etl", str(REPO / "data" / "samples"), "-o", str(folder),
               "--profile", profile, "--limit", str(limit), "--max-chunks-per-doc", "4", "--no-track", "-q"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        dt = time.perf_counter() - t0
        report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").is_file() else {}
        usage = report.get("usage", {})
        tokens = usage.get("output_tokens") or sum(s.get("output_tokens", 0) for s in report.get("stages", {}).values()
                                                    if isinstance(s, dict))
        out[profile] = {"seconds": dt, "exit_code": proc.returncode, "documents": report.get("documents"),
                        "records": report.get("records") or report.get("counts"), "output_tokens": tokens,
                        "tokens_per_s": tokens / dt if tokens else None, "stderr_tail": proc.stderr[-300:]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["agents", "etl", "all"], default="all")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--limit", type=int, default=2, help="ETL: first N sample documents")
    args = parser.parse_args()

    from liquid_shared.models.llama_server import LlamaServer
    from liquid_shared.offline import smollm2_gguf_path

    results: dict = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"}
    with LlamaServer(smollm2_gguf_path(), parallel=16, ctx_per_slot=1024) as server:
        if args.part in ("agents", "all"):
            results["agents"] = asyncio.run(_agents(args.runs, server))
        if args.part in ("etl", "all"):
            results["etl"] = _etl(args.limit, server)
    print(json.dumps(results, indent=2, default=str))
    if "agents" in results:
        print("\n| engine | wall s | valid | output tok/s |\n| --- | --- | --- | --- |")
        for name, r in results["agents"].items():
            print(f"| {name} | {r['seconds']:.1f} | {r['valid']}/{r['runs']} | {r['tokens_per_s']:.1f} |")


if __name__ == "__main__":
    main()
