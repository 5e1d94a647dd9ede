"""ETL throughput: one process versus a local Ray cluster of 1 and of 2 workers, same documents.

    python bench/bench_ray_etl.py --out /tmp/raybench              # every design not yet measured
    python bench/bench_ray_etl.py --out /tmp/raybench --design ray2 # one design
    python bench/bench_ray_etl.py --out /tmp/raybench --table       # the markdown table only

Designs: ``local`` is ``etl_pipeline.run`` in this process; ``ray1`` one Ray worker with every
CPU of the machine; ``ray2`` two workers with half the CPUs each. ``local_remote`` and
``ray2_remote`` run the same with ``--profile remote``: no weights in the driver or the workers,
every stage goes to one shared llama.cpp ``llama-server`` (the bundled SmolLM2 GGUF, ``--parallel
4``, started by this script on loopback), as a team would share one vLLM engine. Same settings everywhere
(``--docs-in-flight`` is per process/worker). Each design runs in a fresh output folder and its
result is written to ``OUT/<design>.json`` (re-running skips measured designs, so a long sweep
resumes). Times: *wall* is the whole call (for Ray: starting the local cluster, the actors, their
model loads, the merge, the shutdown); *processing* is from the first document handed out to
the last one done (model loads included in both designs). The Ray overhead per document is the
driver's round trip minus the worker's own time for it. Each Ray run's merged files are compared
byte for byte with the local run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for pkg in ("liquid-shared-core", "liquid-etl-pipeline"):
    sys.path.insert(0, str(REPO / pkg))

from etl_pipeline.config import DEFAULT_INPUT_DIR, EtlConfig  # noqa: E402

DESIGNS = ("local", "ray1", "ray2", "local_remote", "ray2_remote")
COMPARED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl", "ft/samples.jsonl",
            "index/docs.jsonl", "index/dense/index.faiss", "taxonomy.json", "manifest.json")


def measure(design: str, args: argparse.Namespace) -> dict:
    config = EtlConfig(
        input_dir=args.input, output_dir=args.out / "runs" / design, stages=tuple(args.stages.split(",")),
        max_chunks_per_doc=args.max_chunks_per_doc, concurrency=args.concurrency, docs_in_flight=args.docs_in_flight,
        limit=args.limit, temperature=0.0, profile="remote" if design.endswith("_remote") else "offline",
    )
    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    if design.startswith("local"):
        from etl_pipeline.runner import run

        result = run(config, track=False)
    else:
        from etl_pipeline.ray_runner import run_on_ray

        workers = int(design.removeprefix("ray").removesuffix("_remote"))
        result = run_on_ray(config, "local", workers=workers, cpus_per_worker=max(1, cpus // workers), track=False,
                            num_cpus=cpus, object_store_memory=200 * 2**20)
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"{design}: the run ended with exit {result.exit_code}: {result.message}")
    this_run = result.report["this_run"]
    valid = records_valid(args.out / "runs" / design)
    out = {
        "design": design,
        "documents": this_run["processed"],
        "chunks": this_run["chunks_processed"],
        "wall_seconds": round(wall, 2),
        "processing_seconds": this_run["processing_seconds"],
        "docs_per_minute_processing": round(60 * this_run["processed"] / this_run["processing_seconds"], 2),
        "docs_per_minute_wall": round(60 * this_run["processed"] / wall, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 1),
        "summaries": valid,
        "settings": {"stages": args.stages, "max_chunks_per_doc": args.max_chunks_per_doc, "concurrency": args.concurrency,
                     "docs_in_flight": args.docs_in_flight, "cpus": cpus},
    }
    if "ray" in result.report:
        ray_report = result.report["ray"]
        out["ray"] = {k: ray_report[k] for k in ("workers", "cpus_per_worker", "dispatch_overhead", "retries")}
        out["ray"]["per_worker_documents"] = [w["documents"] for w in ray_report["per_worker"]]
        out["ray"]["per_worker_busy_seconds"] = [w.get("busy_seconds") for w in ray_report["per_worker"]]
    return out


def records_valid(run: Path) -> dict:
    """Summaries written and how many came from the model (not the extractive fallback)."""
    path = run / "summaries.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    from_model = sum(1 for r in rows if r.get("source") == "llm")
    return {"written": len(rows), "from_model": from_model}


def identical_to_local(args: argparse.Namespace, design: str) -> bool | None:
    reference = "local_remote" if design.endswith("_remote") else "local"
    local, other = args.out / "runs" / reference, args.out / "runs" / design
    if not (local / "manifest.json").is_file() or not (other / "manifest.json").is_file():
        return None
    from rag_runtime.index import data_folder

    def read(run, name):  # the index's files are in its current version folder
        return (data_folder(run) / name.removeprefix("index/")).read_bytes() if name.startswith("index/") else (run / name).read_bytes()

    return all(read(local, name) == read(other, name) for name in COMPARED)


def table(args: argparse.Namespace) -> str:
    rows = ["| design | workers x CPUs | docs | wall s | processing s | docs/min (processing) | docs/min (wall) | "
            "Ray overhead per doc | vs one process (same profile) | outputs = one process |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    results = {d: json.loads((args.out / f"{d}.json").read_text()) for d in DESIGNS if (args.out / f"{d}.json").is_file()}
    for design, r in results.items():
        reference = "local_remote" if design.endswith("_remote") else "local"  # remote designs against the remote one process
        base = results.get(reference, {}).get("docs_per_minute_processing")
        ray = r.get("ray")
        shape = f"{ray['workers']} x {ray['cpus_per_worker']}" if ray else f"1 process x {r['settings']['cpus']}"
        overhead = ray["dispatch_overhead"]["mean_seconds"] if ray else None
        ratio = f"{r['docs_per_minute_processing'] / base:.2f}x" if base else ""
        same = "" if design in ("local", "local_remote") else {True: "yes", False: "**no**", None: "?"}[identical_to_local(args, design)]
        rows.append(f"| {design} | {shape} | {r['documents']} | {r['wall_seconds']} | {r['processing_seconds']} | "
                    f"{r['docs_per_minute_processing']} | {r['docs_per_minute_wall']} | "
                    f"{'' if overhead is None else f'{overhead * 1000:.0f} ms'} | {ratio} | {same} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Folder of the runs and the per-design JSON results.")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT_DIR, help="Documents (default: the shipped samples).")
    parser.add_argument("--design", choices=(*DESIGNS, "all"), default="all")
    parser.add_argument("--stages", default="summary", help="LLM stages (comma-separated; default: summary).")
    parser.add_argument("--max-chunks-per-doc", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--docs-in-flight", type=int, default=2, help="Per process (local) or per worker (Ray).")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--table", action="store_true", help="Only print the table of what is measured.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        todo = [d for d in (DESIGNS if args.design == "all" else (args.design,)) if not (args.out / f"{d}.json").is_file()]
        server = None
        if any(d.endswith("_remote") for d in todo):
            from liquid_shared.config import get_settings
            from liquid_shared.models.llama_server import LlamaServer
            from liquid_shared.offline import smollm2_gguf_path

            server = LlamaServer(smollm2_gguf_path(), parallel=4, threads=os.cpu_count() or 1,
                                 log_path=args.out / "llama-server.log").start()
            os.environ["LIQUID_OPENAI_BASE_URL"] = server.base_url  # the Ray workers inherit LIQUID_* settings
            os.environ.setdefault("LIQUID_OPENAI_MODEL", server.alias)
            get_settings.cache_clear()
        for design in DESIGNS if args.design == "all" else (args.design,):
            target = args.out / f"{design}.json"
            if target.is_file():
                print(f"{design}: measured already ({target})")
                continue
            shutil.rmtree(args.out / "runs" / design, ignore_errors=True)  # a killed attempt's shards would be skipped
            result = measure(design, args)
            target.write_text(json.dumps(result, indent=2))
            print(json.dumps(result))
        if server is not None:
            server.stop()
    print(table(args))


if __name__ == "__main__":
    main()
