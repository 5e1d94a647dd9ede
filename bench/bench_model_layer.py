"""Model-layer benchmarks on the default offline model (SmolLM2-135M-Instruct).

1. throughput: 16 concurrent structured-output agent runs, micro-batched, versus the same 16 runs
   one at a time (each awaited before the next), in one process, same prompts, same model.
2. memory: peak RSS of a process where five agents share the registry (offline profile), versus
   five separately loaded copies of the model, versus a single model; each in a fresh subprocess.
3. load time: first conversion of the GGUF (into an empty cache folder) and the cached reload.
4. decode: 48 grammar-constrained requests of uneven length (long and short JSON), all queued at
   once: our continuous batching (``MicroBatcher`` over ``DecodeStream``: finished rows leave,
   waiting rows join, at most 16 rows) versus transformers' ``generate`` in static batches of 16
   with the same per-row grammar as a logits processor; in fp32 and in bf16; same process, same
   prompts, greedy, outputs compared.

6. batch: the running batch at 1 to 64 rows, decoding while rows leave and join (one every third
   step): the cost of a decode step and of a join or leave, with our slot cache
   (``slot_cache.SlotLayer``) against transformers' ``DynamicLayer`` caches (concatenation every
   step, whole-cache copies on every join and leave), same model, same rows, fp32.

5. forward: the cost of one forward pass by dtype (fp32, bf16, int8 linear layers) and batch shape
   (prefill of 190 tokens; a decode step of 1 token on a 190-token cache; 1 row and 16 rows): what
   caps batching gains on a CPU, and what a single request's step costs.

    python bench/bench_model_layer.py [--part throughput|memory|load|decode|forward|batch|all] [--runs 16]
                                      [--decode-requests 48]

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import resource
import statistics
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
        tokens = sum(r.usage.output_tokens for r in results)
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


class Verdict(BaseModel):
    label: str = Field(max_length=12)


def _decode_requests(backend, n: int):
    from liquid_shared.models.backend import GenRequest
    from liquid_shared.models.grammar import estimate_max_tokens, tighten_schema

    reqs = []
    for i in range(n):
        out = Card if i % 2 == 0 else Verdict  # long and short outputs mixed, as in the ETL
        schema = tighten_schema(out.model_json_schema(), 200, 8)
        msgs = [{"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": f"Make a {out.__name__.lower()} about {TOPICS[i % len(TOPICS)]}."}]
        reqs.append(GenRequest(messages=msgs, json_schema=schema, max_new_tokens=min(160, estimate_max_tokens(schema)),
                               temperature=0.0, repetition_penalty=1.05))
    prompts = [backend.fit_context(backend.render(r.messages), r.messages, r.max_new_tokens)[0] for r in reqs]
    return reqs, prompts


def _generate_static(backend, reqs, prompts, batch: int) -> list[str]:
    """transformers' generate in static batches of ``batch``, the same per-row grammar as a logits
    processor (xgrammar matchers), the same greedy settings."""
    import torch
    import xgrammar as xgr
    from transformers import LogitsProcessor, LogitsProcessorList

    tok = backend.tokenizer
    texts = []
    for lo in range(0, len(reqs), batch):
        part, ids_list = reqs[lo:lo + batch], prompts[lo:lo + batch]
        matchers = [xgr.GrammarMatcher(backend.grammars.for_schema(r.json_schema)) for r in part]
        bitmask = xgr.allocate_token_bitmask(len(part), backend.grammars.vocab_size)

        class _Grammar(LogitsProcessor):
            def __init__(self, matchers, bitmask):
                self.matchers, self.bitmask, self.started = matchers, bitmask, False

            def __call__(self, input_ids, scores):
                lines = []
                for i, m in enumerate(self.matchers):
                    if self.started and not m.is_terminated():
                        m.accept_token(int(input_ids[i, -1]))
                    if not m.is_terminated():
                        m.fill_next_token_bitmask(self.bitmask, i)
                        lines.append(i)
                self.started = True
                if lines:
                    xgr.apply_token_bitmask_inplace(scores, self.bitmask, indices=lines)
                return scores

        width = max(map(len, ids_list))
        ids = torch.full((len(part), width), tok.pad_token_id)
        att = torch.zeros_like(ids)
        for i, p in enumerate(ids_list):
            ids[i, width - len(p):] = torch.tensor(p)
            att[i, width - len(p):] = 1
        with torch.inference_mode():
            out = backend.model.generate(
                input_ids=ids, attention_mask=att, max_new_tokens=max(r.max_new_tokens for r in part),
                do_sample=False, repetition_penalty=1.05, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                temperature=None, top_k=None, top_p=None, logits_processor=LogitsProcessorList([_Grammar(matchers, bitmask)]))
        for row in out[:, width:].tolist():
            row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
            texts.append(tok.decode(row, skip_special_tokens=True).strip())
    return texts


async def _continuous(backend, reqs):
    from liquid_shared.models.batcher import MicroBatcher

    batcher = MicroBatcher(backend, max_batch_size=16)
    results = await asyncio.gather(*(batcher.submit(r) for r in reqs))
    return [r.text for r in results], batcher


def _decode(n: int) -> dict:
    import torch

    from liquid_shared.models import ModelSpec
    from liquid_shared.models.backend import LocalLiquidModel
    from liquid_shared.offline import SMOLLM2_ID

    res = {"threads": torch.get_num_threads(), "requests": n}
    for dtype in ("fp32", "bf16"):
        backend = LocalLiquidModel(ModelSpec(model=SMOLLM2_ID, dtype=dtype))
        reqs, prompts = _decode_requests(backend, n)
        backend.generate_batch(reqs[:2], prompts[:2])  # warm-up: grammar compilation, kernels
        t0 = time.perf_counter()
        ref = _generate_static(backend, reqs, prompts, 16)
        t_gen = time.perf_counter() - t0
        steps0, rows0 = backend.decode_steps, backend.row_steps
        t0 = time.perf_counter()
        ours, batcher = asyncio.run(_continuous(backend, reqs))
        t_ours = time.perf_counter() - t0
        steps, row_steps = backend.decode_steps - steps0, backend.row_steps - rows0
        res[dtype] = {"generate_s": t_gen, "ours_s": t_ours, "speedup": t_gen / t_ours,
                      "same_outputs": sum(a == b for a, b in zip(ref, ours, strict=True)),
                      "mean_rows_per_step": row_steps / max(steps, 1), "admissions": len(batcher.batches),
                      "output_tokens": sum(len(backend.tokenizer(t)["input_ids"]) for t in ours)}
        backend.close()
    res["bf16_over_fp32_ours"] = res["fp32"]["ours_s"] / res["bf16"]["ours_s"]
    res["bf16_ours_over_fp32_generate"] = res["fp32"]["generate_s"] / res["bf16"]["ours_s"]
    return res


def _timed_forward(model, ids, step, cache, tokens: int) -> float:
    """Seconds of one prefill of ``ids`` (``tokens`` > 1), or of one decode step of ``step`` on a
    copy of ``cache`` (every timed step sees the same cache length; the copy is not timed)."""
    if tokens > 1:
        t0 = time.perf_counter()
        model(input_ids=ids, logits_to_keep=1)
        return time.perf_counter() - t0
    cache = copy.deepcopy(cache)
    t0 = time.perf_counter()
    model(input_ids=step, use_cache=True, cache=cache, logits_to_keep=1)
    return time.perf_counter() - t0


def _forward_costs(dtypes: list[str]) -> dict:
    """Forward-pass cost of the default model by dtype and batch size: prefill (190 tokens a row)
    and one decode step (1 token a row on top of a 190-token cache, as inside the decode loop),
    random ids, logits of the last position only. ``int8``: fp32 with int8 linear layers."""
    import torch
    from transformers import AutoModelForCausalLM

    from liquid_shared.models.quantize import int8_linear_layers
    from liquid_shared.offline import ensure_smollm2

    folder = ensure_smollm2()
    torch_dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}
    res = {}
    for name in dtypes:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtypes[name]).eval()
        if name == "int8":
            int8_linear_layers(model)
        for batch, tokens in ((1, 190), (16, 190), (1, 1), (16, 1)):
            ids = torch.randint(0, 49000, (batch, 190))
            repeats = 3 if tokens > 1 else 20
            with torch.inference_mode():
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)  # warm-up; the cache of 190
                step = torch.randint(0, 49000, (batch, 1))
                runs = [_timed_forward(model, ids, step, out.cache, tokens) for _ in range(repeats + 1)]
                seconds = statistics.median(runs[1:])
            res[(name, batch, tokens)] = {"ms": seconds * 1000, "tokens_per_s": batch * tokens / seconds}
        del model
    return res


def _batch_costs(sizes: list[int], steps: int = 24, rounds: int = 2) -> dict:
    """A running batch of ``n`` rows (prompts of 200-300 random tokens), ``steps`` decode steps, one
    row leaving and a new one joining every third step; per configuration the median decode step
    and the mean cost of a join or leave (prefill excluded: it is the same for both caches).
    ``rounds`` interleaved rounds of both caches; medians over all of them."""
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from liquid_shared.models.decoding import DecodeStream, NewRow
    from liquid_shared.offline import ensure_smollm2

    model = AutoModelForCausalLM.from_pretrained(ensure_smollm2(), dtype=torch.float32).eval()
    samples: dict = {}
    for n, _, slots in ((n, r, slots) for n in sizes for r in range(rounds) for slots in (False, True)):
        rng = random.Random(n)

        def row(key: int, rng: random.Random = rng) -> NewRow:
            return NewRow(key, [rng.randrange(100, 49000) for _ in range(rng.randrange(200, 300))], 10_000)

        stream = DecodeStream(model, pad_id=0, eos_ids={-1}, slot_cache=slots, max_rows=n)
        stream.admit([row(i) for i in range(n)])
        for _ in range(3):
            stream.step()
        stats = stream.stats
        base_merge, base_leave = stats.merge_seconds, stats.leave_seconds
        times, events, key = [], 0, n
        for i in range(steps):
            before = stats.decode_seconds
            stream.step()
            times.append(stats.decode_seconds - before)
            if i % 3 == 2:  # one row leaves, a new one joins
                stream.drop({stream.keys[rng.randrange(stream.active)]})
                stream.admit([row(key)])
                key += 1
                events += 2
        churn = (stats.merge_seconds - base_merge) + (stats.leave_seconds - base_leave)
        runs = samples.setdefault((n, slots), {"steps": [], "churn": []})
        runs["steps"] += times
        runs["churn"].append(churn / max(events, 1))
    return {key: {"step_ms": statistics.median(r["steps"]) * 1000, "per_row_ms": statistics.median(r["steps"]) * 1000 / key[0],
                  "join_leave_ms": statistics.median(r["churn"]) * 1000} for key, r in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["throughput", "memory", "load", "decode", "forward", "batch", "all"])
    ap.add_argument("--batch-sizes", default="1,16,32,48,64", help="batch: comma-separated running-batch sizes")
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--forward-dtypes", default="fp32,bf16,int8",
                    help="forward: comma-separated dtypes (fp32, bf16, int8 = fp32 with int8 linear layers)")
    ap.add_argument("--decode-requests", type=int, default=48)
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
    if args.part in ("decode", "all"):
        d = _decode(args.decode_requests)
        print(f"\n## {d['requests']} constrained requests of uneven length: continuous batching vs generate() "
              f"in static batches of 16 ({d['threads']} torch threads)\n")
        print("| dtype | generate() s | ours s | speed-up | rows per decode step (ours) | admissions | same outputs |")
        print("|---|---|---|---|---|---|---|")
        for dt in ("fp32", "bf16"):
            r = d[dt]
            print(f"| {dt} | {r['generate_s']:.1f} | {r['ours_s']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['mean_rows_per_step']:.1f} | {r['admissions']} | {r['same_outputs']}/{d['requests']} |")
        print(f"\nbf16 against fp32, both ours: {d['bf16_over_fp32_ours']:.2f}x; bf16 ours against fp32 "
              f"generate(): **{d['bf16_ours_over_fp32_generate']:.2f}x**")
    if args.part in ("forward", "all"):
        f = _forward_costs([d.strip() for d in args.forward_dtypes.split(",") if d.strip()])
        print("\n## Forward pass of SmolLM2-135M by dtype and batch (random ids, last-position logits; "
              "x 1 = one decode step on a 190-token cache; median)\n")
        print("| dtype | rows x tokens | ms | tokens/s |\n|---|---|---:|---:|")
        for (dt, batch, tokens), r in f.items():
            print(f"| {dt} | {batch} x {tokens} | {r['ms']:.1f} | {r['tokens_per_s']:.0f} |")
    if args.part in ("batch", "all"):
        b = _batch_costs([int(x) for x in args.batch_sizes.split(",")])
        print("\n## The running batch: decode step and join/leave cost by rows, slot cache vs DynamicLayer (fp32)\n")
        print("| rows | cache | step ms (median) | ms per row | ms per join or leave | step: DynamicLayer / slots |")
        print("|---:|---|---:|---:|---:|---:|")
        for (n, slots), r in b.items():
            ratio = f"{b[(n, False)]['step_ms'] / r['step_ms']:.2f}x" if slots else "-"
            print(f"| {n} | {'slots' if slots else 'DynamicLayer'} | {r['step_ms']:.1f} | {r['per_row_ms']:.2f} | "
                  f"{r['join_leave_ms']:.1f} | {ratio} |")
    if args.part in ("load", "all"):
        ld = _load()
        print("\n## Load time of the default model (imports excluded)\n")
        print(f"| first load (GGUF conversion) | {ld['first_conversion_s']:.1f} s |\n|---|---|\n"
              f"| cached reload | {ld['cached_reload_s']:.1f} s |")


if __name__ == "__main__":
    main()
