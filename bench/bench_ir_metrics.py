"""Benchmark: liquid_shared.metrics.ir.evaluate versus ranx on the same run, in one process.

    .venv/bin/python bench/bench_ir_metrics.py                 # 300 queries x 1,000 hits, seed 0
    .venv/bin/python bench/bench_ir_metrics.py --scifact DIR   # also SciFact's real test qrels

Both sides start from the same Python dicts (query -> {doc: score}) and end with per-query
scores for every metric, so ranx's conversion into its numba structures is timed, as our own
input handling is. ranx's numba functions are compiled (or loaded from numba's cache) by an
untimed warm-up call on the same data first; then each side runs ``--repeats`` times and we report
the median and the best. The ``ranx evaluate only`` line times ranx with Qrels/Run objects built
beforehand, for reference. Run and qrels hold the same queries, so ranx runs without
``make_comparable`` (its fastest path). Scores are continuous random numbers (no ties), so both must agree;
the largest difference is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

METRICS = ["ndcg@10", "ndcg@100", "recall@10", "recall@100", "recall@1000", "precision@10",
           "mrr@10", "map@100", "map@1000"]


def synthetic(n_queries: int, n_hits: int, n_docs: int, seed: int) -> tuple[dict, dict]:
    """Random run and graded qrels: 1-20 judged documents a query (grades 0-3), ~70% retrieved."""
    rng = random.Random(seed)
    doc_ids = [f"doc{i}" for i in range(n_docs)]
    run, qrels = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        hits = rng.sample(doc_ids, n_hits)
        run[qid] = {d: rng.random() for d in hits}
        judged = rng.sample(hits, rng.randint(1, 14)) + rng.sample(doc_ids, rng.randint(0, 6))
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
    return run, qrels


def scifact_shaped(folder: Path, n_hits: int, seed: int) -> tuple[dict, dict]:
    """SciFact's real test qrels and corpus ids; a random 1,000-hit run that contains most relevant docs."""
    from liquid_shared.data import load_beir

    ds = load_beir(folder, split="test")
    rng = random.Random(seed)
    doc_ids = list(ds.corpus)
    run = {}
    for qid, judged in ds.qrels.items():
        hits = set(rng.sample(doc_ids, n_hits))
        for d in judged:
            if rng.random() < 0.8:
                hits.add(d)
        run[qid] = {d: rng.random() for d in hits}
    return run, ds.qrels


def time_it(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench(label: str, run: dict, qrels: dict, repeats: int) -> None:
    import ranx

    from liquid_shared.metrics.ir import evaluate

    def ours():
        return evaluate(run, qrels, METRICS).per_query

    def ranx_full():
        r = ranx.Run(run)
        q = ranx.Qrels(qrels)
        return ranx.evaluate(q, r, METRICS, return_mean=False, make_comparable=False,
                             save_results_in_run=False)

    q_obj, r_obj = ranx.Qrels(qrels), ranx.Run(run)

    def ranx_eval_only():
        return ranx.evaluate(q_obj, r_obj, METRICS, return_mean=False, make_comparable=False,
                             save_results_in_run=False)

    t0 = time.perf_counter()
    ref = ranx_full()  # numba compile / cache load
    warm = time.perf_counter() - t0
    mine = ours()
    diff = max(abs(mine[m][qid] - float(ref[m][i])) for m in METRICS for i, qid in enumerate(sorted(qrels)))

    rows = [("liquid_shared evaluate", time_it(ours, repeats)),
            ("ranx (dicts -> scores)", time_it(ranx_full, repeats)),
            ("ranx evaluate only", time_it(ranx_eval_only, repeats))]
    base = statistics.median(rows[1][1])
    n_entries = sum(len(v) for v in run.values())
    print(f"\n### {label}: {len(qrels)} queries, {n_entries:,} run entries, "
          f"{sum(len(v) for v in qrels.values()):,} judgments, {len(METRICS)} metrics")
    print(f"ranx warm-up call (numba compile or cache load, not timed below): {warm:.2f} s")
    print(f"largest per-query difference, ours vs ranx: {diff:.2e}\n")
    print("| implementation | median (ms) | best (ms) | ranx / this |")
    print("|---|---:|---:|---:|")
    for name, times in rows:
        med = statistics.median(times)
        print(f"| {name} | {med * 1e3:.1f} | {min(times) * 1e3:.1f} | {base / med:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--hits", type=int, default=1000)
    ap.add_argument("--docs", type=int, default=50_000, help="synthetic corpus size")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    default_scifact = Path(os.environ.get("LIQUID_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--scifact", type=Path, default=default_scifact / "beir" / "scifact",
                    help="BEIR SciFact folder (skipped when absent)")
    args = ap.parse_args()

    import numba

    print(f"python {platform.python_version()}, ranx {version('ranx')}, numba {numba.__version__}, "
          f"numba threads {numba.get_num_threads()}, cpus {os.cpu_count()}")
    print(f"metrics: {', '.join(METRICS)}")
    run, qrels = synthetic(args.queries, args.hits, args.docs, args.seed)
    bench(f"synthetic (seed {args.seed})", run, qrels, args.repeats)
    if (args.scifact / "corpus.jsonl").is_file():
        run, qrels = scifact_shaped(args.scifact, args.hits, args.seed)
        bench("SciFact test qrels, random 1,000-hit run", run, qrels, args.repeats)
    else:
        print(f"\n(SciFact not found at {args.scifact}; skipped)", file=sys.stderr)


if __name__ == "__main__":
    main()
