"""Where the ETL's model time goes: the decode loop's phases over one pipeline run.

    python bench/profile_etl.py --out /tmp/etl-profile                 # the shipped samples, all stages
    python bench/profile_etl.py --out /tmp/etl-profile --limit 3 --stages qa,judge

Runs the pipeline (``etl_pipeline.run``, default settings: fp32 on a CPU, greedy, concurrency 16)
and reads the counters and wall seconds of every loaded model's decode loop
(``liquid_shared.models.decoding.DecodeStats``): prefill forward passes, merging newcomers' caches
into the running batch, grammar bitmasks, choosing tokens, per-row bookkeeping, dropping finished
rows, decode forward passes. Also the prefill tokens per chunk against the chunk's own tokens
(the LLM's tokenizer): how much of the prefill is the same passage again for each stage, the share a
cache keyed on the passage could save; the rest of the prefill is the chat template, the
stage's instructions and its schema, which a cache keyed on the stage's instructions could share
across chunks. A profile, not a comparison: the model is loaded (and a warm-up call
made) before the run, and the figures of that warm-up are subtracted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path


def _totals(registry) -> dict[str, float]:
    from liquid_shared.models.decoding import DecodeStats

    total = DecodeStats()
    for spec in registry.loaded_specs():
        stats = registry.get(spec).stats
        for f in fields(DecodeStats):
            setattr(total, f.name, getattr(total, f.name) + getattr(stats, f.name))
    return total


def chunk_token_count(registry, texts: list[str]) -> int:
    """Tokens of ``texts`` under the (first) loaded LLM's own tokenizer, as they are prefilled."""
    backend = registry.get(registry.loaded_specs()[0])
    return sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def main() -> None:
    from etl_pipeline import DEFAULT_INPUT_DIR, EtlConfig
    from etl_pipeline import run as run_etl
    from liquid_shared import get_registry
    from liquid_shared.models.decoding import DecodeStats
    from liquid_shared.schemas import Chunk, read_jsonl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT_DIR, help="input folder (default: the samples)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the ETL run and profile.json")
    ap.add_argument("--limit", type=int, default=None, help="first N documents")
    ap.add_argument("--stages", default=None, help="comma list of LLM stages (default: all)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--prefix-cache-mb", type=float, default=None,
                    help="the models' shared-prefix cache (0: off; default: LIQUID_PREFIX_CACHE_MB or 256)")
    args = ap.parse_args()

    run_dir = args.out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    fields_ = {"input_dir": args.input, "output_dir": run_dir, "limit": args.limit, "concurrency": args.concurrency,
               "prefix_cache_mb": args.prefix_cache_mb}
    if args.stages:
        fields_["stages"] = tuple(s.strip() for s in args.stages.split(","))
    config = EtlConfig(**fields_)
    # load the model (and compile a first grammar) outside the measured run
    warm = EtlConfig(**{**fields_, "output_dir": args.out / "warmup", "limit": 1})
    shutil.rmtree(warm.output_dir, ignore_errors=True)
    run_etl(warm, track=False)
    before = _totals(get_registry())
    for spec in get_registry().loaded_specs():  # count the measured run's hits only (the warm-up filled it)
        cache = get_registry().get(spec).prefix_cache
        if cache is not None:
            cache.stats = type(cache.stats)()

    start = time.perf_counter()
    result = run_etl(config, track=False)
    wall = time.perf_counter() - start
    after = _totals(get_registry())
    delta = DecodeStats(**{f.name: getattr(after, f.name) - getattr(before, f.name) for f in fields(DecodeStats)})
    prof = delta.profile()
    chunks = list(read_jsonl(run_dir / "chunks.jsonl", Chunk))
    chunk_tokens = chunk_token_count(get_registry(), [c.text for c in chunks])
    n = len(chunks) or 1
    requests = prof["prefill_rows"] / n
    summary = {
        "status": result.status, "wall_seconds": wall, "chunks": len(chunks), "stages": list(config.stages),
        "outside_loop_seconds": wall - prof["loop_seconds"],
        "requests_per_chunk": prof["prefill_rows"] / n,
        "prefill_tokens_per_chunk": prof["prefill_tokens"] / n,
        "chunk_tokens_per_chunk": chunk_tokens / n,
        # every request of a chunk carries its passage once; the rest is template, instructions, schema
        "passage_share_of_prefill": requests * chunk_tokens / prof["prefill_tokens"] if prof["prefill_tokens"] else 0.0,
        "repeated_passage_share": (requests - 1) * chunk_tokens / prof["prefill_tokens"] if prof["prefill_tokens"] else 0.0,
        "decode_steps_per_chunk": prof["steps"] / n,
        "mean_prompt_tokens": prof["prefill_tokens"] / prof["prefill_rows"] if prof["prefill_rows"] else 0.0,
        "prefill_tokens_per_second": prof["prefill_tokens"] / prof["prefill_seconds"] if prof["prefill_seconds"] else 0.0,
        "decoded_tokens_per_second": prof["row_steps"] / prof["decode_seconds"] if prof["decode_seconds"] else 0.0,
        "ms_per_decode_step": 1000 * prof["decode_seconds"] / prof["steps"] if prof["steps"] else 0.0,
        "ms_mask_per_step": 1000 * prof["mask_seconds"] / prof["steps"] if prof["steps"] else 0.0,
        "loop": prof,
        "prefix_cache": {spec.model: (get_registry().get(spec).prefix_cache.report()
                                      if get_registry().get(spec).prefix_cache is not None else None)
                         for spec in get_registry().loaded_specs()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.json").write_text(json.dumps(summary, indent=2))
    print("| phase | seconds | share of the loop |\n|---|---:|---:|")
    for k in ("prefill", "merge", "mask", "choose", "accept", "leave", "decode"):
        print(f"| {k} | {prof[k + '_seconds']:.1f} | {prof[k + '_share']:.1%} |")
    print(f"| loop total | {prof['loop_seconds']:.1f} | wall {wall:.1f} s, outside the loop "
          f"{summary['outside_loop_seconds']:.1f} s |")
    for k in ("chunks", "requests_per_chunk", "prefill_tokens_per_chunk", "chunk_tokens_per_chunk",
              "passage_share_of_prefill", "repeated_passage_share", "decode_steps_per_chunk", "mean_prompt_tokens", "prefill_tokens_per_second",
              "decoded_tokens_per_second", "ms_per_decode_step", "ms_mask_per_step"):
        v = summary[k]
        print(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
    for model, rep in summary["prefix_cache"].items():
        print(f"- prefix cache of {model}: " + ("off" if rep is None else
              f"hit rate {rep['hit_rate']:.1%} ({rep['hits']}/{rep['lookups']}), {rep['tokens_saved']} prompt tokens "
              f"not prefilled, {rep['entries']} entries, {rep['bytes_held'] / 2**20:.1f} MiB held"))
    print(f"- mean batch (rows per decode step): {prof['mean_batch']:.2f}; prefill padding share "
          f"{prof['padding_share']:.1%}; prefill passes {int(prof['prefills'])} for {int(prof['prefill_rows'])} requests")


if __name__ == "__main__":
    main()
