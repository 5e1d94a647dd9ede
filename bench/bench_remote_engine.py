"""In-process engine versus llama.cpp's ``llama-server``, same model (SmolLM2-135M-Instruct: the
bundled GGUF served by llama-server; the same weights dequantised to fp32 in process), same run.

1. agents: 16 structured-output agent runs (``bench_model_layer.py``'s Card schema and prompts),
   all at once (``concurrent``) and one at a time (``sequential``: the latency one user waits),
   through the server (``--parallel 16`` slots) and through our in-process engine in fp32 and in
   int8 (``dtype="int8"``: int8 linear layers); valid outputs, and the share of Cards equal to the
   in-process fp32 engine's (greedy).
2. etl: ``run_etl`` on the shipped samples (``--limit``/``--max-chunks-per-doc`` keep it short) with
   ``--profile offline`` (in process) versus ``--profile remote`` (the server): wall time, output
   tokens per second from the run's usage, records valid.

    python bench/bench_remote_engine.py [--part agents|etl|all] [--runs 16] [--limit 2]
                                        [--engines "in-process fp32,in-process int8,llama-server"]
                                        [--modes concurrent,sequential] [--repeats 3] [--json F]

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


ENGINES = ("in-process fp32", "in-process int8", "llama-server")


async def _agents(n: int, server, engines: list[str], modes: list[str], repeats: int) -> dict:
    """Card agent runs per engine: ``concurrent`` (all ``n`` at once) and ``sequential`` (each
    awaited before the next: what one interactive user waits). Every engine is loaded and warmed
    up first; then ``repeats`` rounds, each running every mode on every engine in turn
    (interleaved, so that a slow spell of a shared machine does not land on one engine). Wall
    seconds are the median of the rounds; the first round's outputs are kept for agreement."""
    import statistics

    from pydantic_ai import Agent

    from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
    from liquid_shared.offline import SMOLLM2_ID

    prompts = [f"Make a study card about {TOPICS[i % len(TOPICS)]}." for i in range(n)]
    specs = {
        "in-process fp32": ModelSpec(model=SMOLLM2_ID, dtype="fp32", max_batch_size=16, temperature=0.0),
        "in-process int8": ModelSpec(model=SMOLLM2_ID, dtype="int8", max_batch_size=16, temperature=0.0),
        "llama-server": ModelSpec(model=server.alias, backend="openai", base_url=server.base_url,
                                  max_batch_size=16, temperature=0.0),
    }
    agents = {}
    for name in engines:
        agents[name] = Agent(LiquidModel(specs[name], registry=ModelRegistry(budget_bytes=8 * 2**30)),
                             output_type=Card, instructions="Write a study card.")
        await agents[name].run("warm-up")  # load + grammar compile outside the timing
    out: dict = {}
    for round_ in range(repeats):
        for mode in modes:
            for name in engines:
                agent = agents[name]
                t0 = time.perf_counter()
                if mode == "concurrent":
                    results = await asyncio.gather(*(agent.run(p) for p in prompts), return_exceptions=True)
                else:
                    results = []
                    for p in prompts:
                        try:
                            results.append(await agent.run(p))
                        except Exception as exc:  # noqa: BLE001  (counted as not valid)
                            results.append(exc)
                dt = time.perf_counter() - t0
                ok = [r for r in results if not isinstance(r, BaseException)]
                key = f"{name}, {mode}"
                r = out.setdefault(key, {"engine": name, "mode": mode, "runs": n, "rounds": []})
                r["rounds"].append({"seconds": dt, "output_tokens": sum(x.usage.output_tokens for x in ok),
                                    "valid": sum(isinstance(x.output, Card) for x in ok)})
                if round_ == 0:
                    r["outputs"] = [x.output.model_dump() if not isinstance(x, BaseException) else None
                                    for x in results]
    for r in out.values():
        seconds = [x["seconds"] for x in r["rounds"]]
        r["seconds"] = statistics.median(seconds)
        r["seconds_min"], r["seconds_max"] = min(seconds), max(seconds)
        r["seconds_per_run"] = r["seconds"] / n
        r["valid"] = min(x["valid"] for x in r["rounds"])
        r["tokens_per_s"] = statistics.median(x["output_tokens"] / x["seconds"] for x in r["rounds"])
    return out


def _agreement(agents: dict) -> dict:
    """Share of runs whose Card equals the fp32 engine's Card for the same prompt and mode."""
    out = {}
    for key, r in agents.items():
        ref = agents.get(f"in-process fp32, {r['mode']}")
        if ref is None or r["engine"] == "in-process fp32":
            continue
        same = sum(a is not None and a == b for a, b in zip(r["outputs"], ref["outputs"], strict=True))
        out[key] = same / r["runs"]
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
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"agents: comma-separated subset of {', '.join(ENGINES)} (default: all)")
    parser.add_argument("--modes", default="concurrent,sequential",
                        help="agents: 'concurrent' (all runs at once), 'sequential' (one at a time), or both")
    parser.add_argument("--repeats", type=int, default=3,
                        help="agents: interleaved rounds over engines and modes; wall time is their median (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results (with every output) as JSON here")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for e in engines:
        if e not in ENGINES:
            parser.error(f"--engines: unknown engine {e!r}; choose from {', '.join(ENGINES)}")
    for m in modes:
        if m not in ("concurrent", "sequential"):
            parser.error(f"--modes: unknown mode {m!r}; use concurrent and/or sequential")

    from liquid_shared.models.llama_server import LlamaServer
    from liquid_shared.offline import smollm2_gguf_path

    results: dict = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"}
    with LlamaServer(smollm2_gguf_path(), parallel=16, ctx_per_slot=1024) as server:
        if args.part in ("agents", "all"):
            results["agents"] = asyncio.run(_agents(args.runs, server, engines, modes, args.repeats))
            results["agreement_with_fp32"] = _agreement(results["agents"])
        if args.part in ("etl", "all"):
            results["etl"] = _etl(args.limit, server)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    brief = {k: v for k, v in results.items() if k != "agents"}
    print(json.dumps(brief, indent=2, default=str))
    if "agents" in results:
        agents, agree = results["agents"], results["agreement_with_fp32"]
        print(f"\n| engine | mode | wall s (median of {args.repeats}) | min - max | s per run | valid (worst round) | "
              "output tok/s | same Card as fp32 |")
        print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
        for key, r in agents.items():
            same = f"{agree[key]:.0%}" if key in agree else "-"
            print(f"| {r['engine']} | {r['mode']} | {r['seconds']:.1f} | {r['seconds_min']:.1f} - {r['seconds_max']:.1f} | "
                  f"{r['seconds_per_run']:.2f} | "
                  f"{r['valid']}/{r['runs']} | {r['tokens_per_s']:.1f} | {same} |")
        server_runs = {m: agents.get(f"llama-server, {m}") for m in modes}
        for r in agents.values():
            ref = server_runs.get(r["mode"])
            if ref is not None and r["engine"] != "llama-server":
                print(f"{r['engine']}, {r['mode']}: {ref['seconds'] / r['seconds']:.2f}x llama-server's speed "
                      f"(wall {r['seconds']:.1f} s against {ref['seconds']:.1f} s)")

if __name__ == "__main__":
    main()
