"""Grammar work per decode step: xgrammar's batch matcher versus one matcher call per row.

    python bench/bench_grammar_masks.py [--rows 16] [--steps 120] [--repeats 5]

``RowGrammars`` (``liquid_shared.models.grammar``) fills the token bitmasks of a decode step's
constrained rows and advances their matchers. The *baseline* calls ``fill_next_token_bitmask``
and ``accept_token`` once per row from Python (``batched=False``, the loop before the batch matcher); the
*batched* path makes one ``BatchGrammarMatcher.batch_fill_next_token_bitmask`` call (C++ threads)
and one ``batch_accept_token`` call per step.

Workload: ``--rows`` rows decoding under the ETL's own output schemas (metadata, taxonomy,
facts, summary, QA, extractive question; compiled for the SmolLM2 tokenizer), rows cycling through the schemas. The
token each row takes at a step is drawn (seeded) from what its grammar allows, so both paths
replay the same token sequences; a row that completes its JSON leaves and a fresh row under the
next schema takes its place, as in the running batch. No model forward pass runs: the figure is
the grammar work alone. Both paths' bitmasks are compared at every step (they must be equal).
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for pkg in ("liquid-shared-core", "liquid-etl-pipeline"):
    sys.path.insert(0, str(REPO / pkg))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from etl_pipeline.stage_outputs import (  # noqa: E402
    FactsOut,
    MetadataOut,
    QAOut,
    QuestionOut,
    SummaryOut,
    TaxonomyOut,
)
from liquid_shared.models.grammar import GrammarCache, RowGrammars, tighten_schema  # noqa: E402
from liquid_shared.offline import ensure_smollm2  # noqa: E402


def _schemas() -> list[dict]:
    return [tighten_schema(m.model_json_schema(), 200, 8) for m in (MetadataOut, TaxonomyOut, FactsOut, SummaryOut, QAOut, QuestionOut)]


def _replay(grammars: list, rows: int, steps: int, seed: int, vocab: int,
            batched: bool) -> tuple[list[tuple[float, float]], list[torch.Tensor]]:
    """Run ``steps`` grammar steps over ``rows`` rows; returns per-step seconds (fill + accept,
    apply) and the bitmasks."""
    rg = RowGrammars(vocab, batched=batched)
    rng = torch.Generator().manual_seed(seed)
    next_key = 0
    keys: list[int] = []
    for _ in range(rows):
        rg.add(next_key, grammars[next_key % len(grammars)])
        keys.append(next_key)
        next_key += 1
    seconds, masks = [], []
    for _ in range(steps):
        scores = torch.randn(len(keys), vocab, generator=rng)
        t0 = time.perf_counter()
        lines = rg.fill(keys)
        ta = time.perf_counter()
        rg.apply(scores, lines)
        t1 = time.perf_counter()
        masks.append(rg.bitmask[:len(keys)].clone())
        allowed = _unpack(rg.bitmask[:len(keys)], vocab)
        tokens = []
        for k in range(len(keys)):
            choices = allowed[k].nonzero().squeeze(1) if k in lines else torch.arange(vocab)
            tokens.append(int(choices[torch.randint(len(choices), (1,), generator=rng)]))
        t2 = time.perf_counter()
        rg.accept_all(keys, tokens)
        t3 = time.perf_counter()
        seconds.append(((ta - t0) + (t3 - t2), t1 - ta))  # (fill + accept, apply)
        for k, key in enumerate(list(keys)):  # a completed row leaves; a new one joins
            if rg.terminated(key):
                rg.discard(key)
                rg.add(next_key, grammars[next_key % len(grammars)])
                keys[k] = next_key
                next_key += 1
    return seconds, masks


def _unpack(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """[rows, vocab] booleans from xgrammar's int32 bitmask (bit j of word w: token 32 w + j)."""
    bits = (bitmask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab].bool()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16, help="rows in the running batch (default 16, the ETL's batch)")
    ap.add_argument("--steps", type=int, default=120, help="decode steps per replay (default 120)")
    ap.add_argument("--repeats", type=int, default=5, help="replays per path, interleaved (default 5)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(ensure_smollm2())
    vocab = len(tokenizer)
    cache = GrammarCache(tokenizer, vocab)
    grammars = [cache.for_schema(s) for s in _schemas()]
    per_step: dict[str, dict[str, list[float]]] = {p: {"matchers": [], "apply": [], "total": []}
                                                   for p in ("row by row", "batched")}
    for r in range(args.repeats):
        base, base_masks = _replay(grammars, args.rows, args.steps, r, vocab, batched=False)
        fast, fast_masks = _replay(grammars, args.rows, args.steps, r, vocab, batched=True)
        for step, (a, b) in enumerate(zip(base_masks, fast_masks, strict=True)):
            if not torch.equal(a, b):
                raise SystemExit(f"replay {r}, step {step}: the batched bitmask differs from the row-by-row one")
        for name, steps in (("row by row", base), ("batched", fast)):
            per_step[name]["matchers"].append(statistics.median(m for m, _ in steps) * 1000)
            per_step[name]["apply"].append(statistics.median(a for _, a in steps) * 1000)
            per_step[name]["total"].append(statistics.median(m + a for m, a in steps) * 1000)
    med = {name: {k: statistics.median(v) for k, v in parts.items()} for name, parts in per_step.items()}
    print(f"\n{args.rows} rows, {args.steps} steps x {args.repeats} replays; bitmasks identical at every step; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| path | ms per step: fill + accept | apply to the scores | total (min - max over replays) |")
    print("|---|---:|---:|---:|")
    for name, parts in per_step.items():
        print(f"| {name} | {med[name]['matchers']:.3f} | {med[name]['apply']:.3f} | {med[name]['total']:.3f} "
              f"({min(parts['total']):.3f} - {max(parts['total']):.3f}) |")
    ratios = {k: med["row by row"][k] / med["batched"][k] for k in ("matchers", "total")}
    print(f"\nrow by row / batched: fill + accept **{ratios['matchers']:.2f}x**, whole step's grammar work "
          f"**{ratios['total']:.2f}x**")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "steps": args.steps, "ms_per_step": per_step,
                                         "median_ms": med, "ratios": ratios}, indent=1))

if __name__ == "__main__":
    main()
