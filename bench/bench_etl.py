"""ETL throughput: our pipeline versus the naive design it replaces, in one process.

    python bench/bench_etl.py                       # the shipped samples, concurrency 16
    python bench/bench_etl.py --concurrency 4,16    # a sweep
    python bench/bench_etl.py --limit 3 --temperature 0
    python bench/bench_etl.py --dtypes fp32,int8     # also with int8 linear layers, against the fp32 naive run
    python bench/bench_etl.py --prompt-layouts instructions-first,passage-first   # both prompt layouts
    python bench/bench_etl.py --batch-sizes 16,48    # the pipeline with running batches of 16 and 48 rows

*Naive*: one agent call per chunk per stage, each awaited before the next, document after
document (what a straightforward script over the same agents does). *Pipeline*: the async Pydantic
Graph per document, all stages of all chunks as parallel branches, several documents in flight,
at most ``--concurrency`` requests per stage in flight, so the model's micro-batcher sees full
batches of one stage each.

Same model (one registry load shared by both), same documents, same stages, same settings, and
both write the same set of output files (the naive run goes through the same record assembly,
shards and merge). A warm-up call per stage runs first so that neither design pays for model
loading or grammar compilation. Prints a markdown table and writes JSON next to the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for pkg in ("liquid-shared-core", "liquid-etl-pipeline"):
    sys.path.insert(0, str(REPO / pkg))

from etl_pipeline.chunking import build_chunks  # noqa: E402
from etl_pipeline.config import DEFAULT_INPUT_DIR, DEFAULT_RUNS_DIR, EtlConfig  # noqa: E402
from etl_pipeline.graph import DocState, PipelineDeps, StageOutput, finalize_document, write_failure  # noqa: E402
from etl_pipeline.llm_stages import ChunkStages, registry_models  # noqa: E402
from etl_pipeline.loaders import LoadError, discover_sources, load_document  # noqa: E402
from etl_pipeline.merge import merge_run  # noqa: E402
from etl_pipeline.runner import _make_encoder, peak_rss_bytes, run_async  # noqa: E402
from etl_pipeline.shards import ShardStore  # noqa: E402
from etl_pipeline.tmd import TmdAssigner  # noqa: E402
from etl_pipeline.token_counter import default_token_counter  # noqa: E402


async def naive_run(config: EtlConfig) -> dict:
    """Every stage of every chunk awaited one after another, one document after another."""
    embedder, encode = _make_encoder()
    stages = ChunkStages(config, registry_models(config.profile), concurrency=1, encode=encode)
    store = ShardStore(config.output_dir)
    deps = PipelineDeps(
        config=config, stages=stages, encode=encode, tmd=TmdAssigner(embedder.encode), shards=store, counter=default_token_counter()
    )
    items = discover_sources(config.input_dir, limit=config.limit)
    start = time.perf_counter()
    n_chunks = 0
    for item in items:
        state = DocState(item=item)
        try:
            doc = load_document(item, max_bytes=int(config.max_file_mb * 1e6), jsonl_text_field=config.jsonl_text_field)
        except LoadError as exc:
            await write_failure(state, deps, exc.reason)
            continue
        state.document = doc
        state.chunks = build_chunks(
            doc, max_tokens=config.max_chunk_tokens, min_tokens=config.min_chunk_tokens, max_chunks=config.max_chunks_per_doc
        ).chunks
        outputs: list[StageOutput] = []
        for chunk in state.chunks:
            stats = state.stats
            outputs.append(StageOutput(chunk.chunk_id, "metadata", await stages.metadata(chunk, stats)))
            outputs.append(StageOutput(chunk.chunk_id, "classify", await stages.classify(chunk, stats)))
            outputs.append(StageOutput(chunk.chunk_id, "taxonomy", await stages.taxonomy(chunk, stats)))
            outputs.append(StageOutput(chunk.chunk_id, "facts", await stages.facts(chunk, stats)))
            outputs.append(StageOutput(chunk.chunk_id, "summary", await stages.summary(chunk, stats)))
            qa_items = await stages.qa(chunk, stats)
            verdicts = [await stages.judge(chunk, qa_item, stats) for qa_item in qa_items]
            outputs.append(StageOutput(chunk.chunk_id, "qa", list(zip(qa_items, verdicts, strict=True))))
        await finalize_document(state, deps, outputs)
        n_chunks += len(state.chunks)
    seconds = time.perf_counter() - start
    report = merge_run(
        config, items, store, this_run={"processing_seconds": seconds}, started_at=time.time(), memory={}, dim=embedder.dim
    )
    return {"seconds": seconds, "documents": len(items), "chunks": n_chunks, "report": report}


async def pipeline_run(config: EtlConfig) -> dict:
    result = await run_async(config, track=False)
    run = result.report["this_run"]
    return {"seconds": run["processing_seconds"], "documents": run["processed"], "chunks": run["chunks_processed"], "report": result.report}


async def warm_up(config: EtlConfig) -> None:
    """Load the model and compile every stage's grammar once, outside the timings."""
    _, encode = _make_encoder()
    stages = ChunkStages(config, registry_models(config.profile), concurrency=16, encode=encode)
    item = discover_sources(config.input_dir, limit=1)[0]
    doc = load_document(item, max_bytes=10**8, jsonl_text_field=config.jsonl_text_field)
    chunk = build_chunks(doc, max_tokens=config.max_chunk_tokens, min_tokens=config.min_chunk_tokens, max_chunks=1).chunks[0]
    from etl_pipeline.llm_stages import DocStats

    stats = DocStats()
    await asyncio.gather(
        stages.metadata(chunk, stats), stages.classify(chunk, stats), stages.taxonomy(chunk, stats),
        stages.facts(chunk, stats), stages.summary(chunk, stats), stages.qa(chunk, stats),
    )
    from etl_pipeline.stage_outputs import QAItem

    await stages.judge(chunk, QAItem(question="What is it about?", answer="it", kind="factual"), stats)


def _folder(name: str) -> str:
    return name.replace("pipeline c=", "pipeline-c").replace(" b=", "-b").replace(" + prefix cache", "-prefix-cache")


def _row(name: str, r: dict, base: dict | None, calls: int, tokens: int) -> str:
    minutes = r["seconds"] / 60
    speed = f"{base['seconds'] / r['seconds']:.2f}x" if base else "1.00x"
    hits = f"{r['prefix_cache']['hit_rate']:.0%}" if r.get("prefix_cache") else "-"
    return (
        f"| {name} | {r['documents']} | {r['chunks']} | {r['seconds']:.1f} | {r['chunks'] / minutes:.2f} | "
        f"{r['documents'] / minutes:.2f} | {calls} | {tokens} | {r['prefills']} | {r['rows_per_step']:.1f} | "
        f"{r['prefill_tokens_per_chunk']:.0f} | {hits} | {speed} |"
    )


AGREEMENT_FILES = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl")


def agreement(a: Path, b: Path) -> dict[str, float]:
    """Share of records (lines) of each output file that the two runs wrote identically."""
    out = {}
    for name in AGREEMENT_FILES:
        lines_a = (a / name).read_text(encoding="utf-8").splitlines() if (a / name).exists() else []
        lines_b = (b / name).read_text(encoding="utf-8").splitlines() if (b / name).exists() else []
        both = max(len(lines_a), len(lines_b))
        out[name] = len(set(lines_a) & set(lines_b)) / both if both else 1.0
    return out


def _calls_tokens(report: dict) -> tuple[int, int]:
    stages = report["stages"]
    return sum(s["calls"] for s in stages.values()), sum(s["output_tokens"] for s in stages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT_DIR)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--concurrency", default="16", help="one value or a comma-separated sweep")
    parser.add_argument("--temperature", type=float, default=None, help="default: the ETL's (0, greedy)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR / "bench-etl")
    parser.add_argument("--prefix-cache", choices=["both", "on", "off"], default="both",
                        help="the pipeline with the shared-prefix cache, without it, or both (default); the naive "
                             "design always runs without it (the design before the cache)")
    parser.add_argument("--prompt-layouts", default="instructions-first",
                        help="comma-separated ETL prompt layouts (instructions-first, passage-first), each a full set of "
                             "runs; with more than one, every run is also compared with the first one's naive run")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated running-batch sizes for the pipeline runs (LIQUID_MAX_BATCH_SIZE; "
                             "default: the setting's value)")
    parser.add_argument("--dtypes", default="fp32",
                        help="comma-separated model dtypes, each a full set of runs in this process (e.g. fp32,int8: "
                             "'int8' = int8 linear layers on the CPU); with more than one, every run is also "
                             "compared with the first dtype's naive run (speed and identical records)")
    args = parser.parse_args()

    import shutil

    if args.out.exists():
        shutil.rmtree(args.out)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    layouts = [x.strip() for x in args.prompt_layouts.split(",") if x.strip()]
    variants = [(d, x) for d in dtypes for x in layouts]
    summary: dict = {}
    naive_dirs: dict[str, Path] = {}
    first_naive: dict | None = None
    for dtype, layout in variants:
        name = dtype if len(layouts) == 1 else f"{dtype} {layout}"
        out = args.out if len(variants) == 1 else args.out / name.replace(" ", "-")
        results, naive_dirs[name] = _bench_dtype(args, dtype, out, layout)
        first_naive = first_naive or results["naive"]
        summary[name] = results
    if len(variants) > 1:  # every design against the first variant's naive run (the same process)
        base = next(iter(summary))
        print(f"\n### every run against the naive {base} run\n")
        print(f"| variant | design | seconds | speed-up over naive {base} | records identical to naive {base} "
              "(metadata / summaries / QA / validation) | QA pairs valid |")
        print("|---|---|---:|---:|---|---:|")
        for variant, results in summary.items():
            for name, r in results.items():
                if not isinstance(r, dict) or "seconds" not in r:
                    continue
                folder = naive_dirs[variant] if name == "naive" else naive_dirs[variant].parent / _folder(name)
                same = agreement(naive_dirs[base], folder)
                shares = " / ".join(f"{same[f]:.0%}" for f in ("metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl",
                                                                "validation.jsonl"))
                r.setdefault("agreement_with_first_naive", same)
                counts = r.get("counts", {})
                print(f"| {variant} | {name} | {r['seconds']:.1f} | {first_naive['seconds'] / r['seconds']:.2f}x | {shares} "
                      f"| {counts.get('qa_valid', 0)} of {counts.get('qa_pairs', 0)} |")
    (args.out / "bench.json").write_text(json.dumps(summary if len(variants) > 1 else summary[next(iter(summary))],
                                                   indent=2, default=str))


def _bench_dtype(args, dtype: str, out: Path, layout: str) -> tuple[dict, Path]:
    """Warm-up, the naive design and the pipeline runs, all with the model in ``dtype`` and the
    ETL's prompts in ``layout``."""
    import os

    from liquid_shared.config import get_settings
    from liquid_shared.models import get_profile, get_registry

    if os.environ.get("LIQUID_DTYPE") != dtype:
        os.environ["LIQUID_DTYPE"] = dtype
        get_settings.cache_clear()
        registry = get_registry()
        for loaded in registry.loaded_specs():  # specs name no dtype: the setting decides, so reload
            registry.unload(loaded)
    registry = get_registry()
    common = {"input_dir": args.input, "limit": args.limit, "prompt_layout": layout}
    if args.temperature is not None:  # otherwise the ETL's default (greedy)
        common["temperature"] = args.temperature
    warm_cfg = EtlConfig(output_dir=out / "warmup", **common)
    t = time.perf_counter()
    asyncio.run(warm_up(warm_cfg))
    warm_seconds = time.perf_counter() - t

    naive_cfg = EtlConfig(output_dir=out / "naive", concurrency=1, docs_in_flight=1, **common)
    spec = get_profile(naive_cfg.profile).spec_for("metadata")
    backend = registry.get(spec)

    from liquid_shared.models.prefix_cache import PrefixCache

    bound = backend.prefix_cache.max_bytes if backend.prefix_cache is not None else 256 * 2**20

    def occupancy(run, cached: bool) -> dict:
        # the same loaded model either way: a fresh (empty) cache, or none
        backend.prefix_cache = PrefixCache(bound) if cached else None
        steps, rows, prefills = backend.decode_steps, backend.row_steps, backend.calls
        tokens = backend.stats.prefill_tokens
        out = asyncio.run(run)
        out["rows_per_step"] = (backend.row_steps - rows) / max(backend.decode_steps - steps, 1)
        out["prefills"] = backend.calls - prefills
        out["prefill_tokens_per_chunk"] = (backend.stats.prefill_tokens - tokens) / max(out["chunks"], 1)
        out["prefix_cache"] = backend.prefix_cache.report() if cached else None
        return out

    naive = occupancy(naive_run(naive_cfg), cached=False)
    results = {"naive": naive}
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.prefix_cache]
    sizes = [int(x) for x in args.batch_sizes.split(",")] if args.batch_sizes else [None]
    for size in sizes:
        if size is not None:  # a batcher is made per event loop, so each run below gets its own
            os.environ["LIQUID_MAX_BATCH_SIZE"] = str(size)
            get_settings.cache_clear()
        for c in [int(x) for x in args.concurrency.split(",")]:
            for cached in modes:
                name = f"pipeline c={c}" + (f" b={size}" if size is not None else "") + (" + prefix cache" if cached else "")
                cfg = EtlConfig(output_dir=out / _folder(name), concurrency=c, **common)
                results[name] = occupancy(pipeline_run(cfg), cached)

    batches = registry.batch_sizes(spec)
    weights = {s.model: registry.get(s).weight_bytes for s in registry.loaded_specs()}
    stage_sum = sum(weights.get(get_profile(naive_cfg.profile).spec_for(st).model, 0)
                    for st in ("metadata", "metadata", "metadata", "metadata", "summary", "qa", "validation"))

    print(f"\n## weights {backend.placement.label}, prompt layout {layout}, running batch "
          f"{spec.batch_limit if not args.batch_sizes else args.batch_sizes}\n\nwarm-up (model load + grammars): {warm_seconds:.1f} s; "
          f"input {args.input} ({naive['documents']} documents)\n")
    print("| design | docs | chunks | seconds | chunks/min | docs/min | LLM calls | output tokens | prefills | "
          "rows per decode step | prefill tokens per chunk | prefix hit rate | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        calls, tokens = _calls_tokens(r["report"])
        print(_row(name, r, None if name == "naive" else naive, calls, tokens))
    for name in results:
        if name != "naive":
            same = agreement(naive_cfg.output_dir, out / _folder(name))
            summary_line = ", ".join(f"{k} {v:.0%}" for k, v in same.items())
            print(f"\nrecords identical to the naive run's ({name}): {summary_line}")
            results[name]["agreement"] = same
    for name, r in results.items():
        counts = r["report"].get("counts", {})
        print(f"{name}: counts {json.dumps(counts)}")
    print(f"\nmodel weights: {backend.placement.label}; requests admitted per prefill: mean "
          f"{statistics.fmean(batches):.1f}, max {max(batches)} over {len(batches)} prefills (both runs)" if batches else "")
    print(f"peak RSS of this process: {peak_rss_bytes() / 2**30:.2f} GiB; model weights loaded: "
          f"{sum(weights.values()) / 2**30:.2f} GiB ({registry.load_counts[spec]} load(s)); "
          f"sum over the 7 LLM stages of the model each names: {stage_sum / 2**30:.2f} GiB")
    summary = {
        name: {k: v for k, v in r.items() if k != "report"} | {"counts": r["report"]["counts"]} for name, r in results.items()
    }
    summary["memory"] = {"peak_rss_bytes": peak_rss_bytes(), "weights": weights, "sum_of_role_models": stage_sum}
    summary["batches"] = batches
    summary["weights_label"] = backend.placement.label
    return summary, naive_cfg.output_dir

if __name__ == "__main__":
    main()
