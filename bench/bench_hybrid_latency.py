"""Benchmark: end-to-end hybrid search latency per query on BEIR SciFact, and retrieval quality.

    .venv/bin/python bench/bench_hybrid_latency.py              # ../shared/data/beir/scifact
    .venv/bin/python bench/bench_hybrid_latency.py --scifact DIR

Part 1, quality: nDCG@10 on the 300 test queries for BM25, dense (all-MiniLM-L6-v2, FAISS flat)
and hybrid (RRF; min-max weighted fusion, dense weight 0.5), top 100 candidates a side.

Part 2, latency: each test query alone, as a service sees it: encode the query, FAISS top 100,
BM25 top 100, fuse and build the top 10 ``Hit`` objects; each stage timed with perf_counter;
p50/p95 of each stage and of the total, and the process CPU time per query (all threads; less
sensitive than wall time to other load on a shared machine). The comparison line runs the same
300 queries as one ``search_many`` batch (queries encoded together) and reports time and CPU per query.
The first run encodes the corpus (about a minute on 2 cores); the embedding cache makes reruns fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

DEFAULT_SCIFACT = Path(os.environ.get("LIQUID_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "beir" / "scifact"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    if not (args.scifact / "corpus.jsonl").is_file():
        raise SystemExit(f"SciFact not found at {args.scifact} (pass --scifact DIR)")

    from liquid_shared.data import load_beir
    from liquid_shared.metrics.ir import evaluate
    from rag_runtime import HybridRetriever, RagIndex, load_beir_corpus

    dataset = load_beir(args.scifact, split="test")
    t0 = time.perf_counter()
    index = RagIndex.build(load_beir_corpus(args.scifact))
    build_s = time.perf_counter() - t0
    qids = list(dataset.queries)
    queries = [dataset.queries[q] for q in qids]
    rrf = HybridRetriever(index.bm25, index.dense, fusion="rrf", candidates=args.candidates)
    weighted = HybridRetriever(index.bm25, index.dense, fusion="weighted", candidates=args.candidates)

    print(f"# Hybrid search on SciFact test: {len(index.store)} docs, {len(qids)} queries; "
          f"python {platform.python_version()}, faiss {version('faiss-cpu')}, bm25s {version('bm25s')}, "
          f"sentence-transformers {version('sentence-transformers')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; torch threads {__import__('torch').get_num_threads()}; "
          f"index build {build_s:.1f} s")
    print()
    print("| retriever | nDCG@10 |")
    print("|---|---|")
    for name, retriever in [("BM25 (bm25s, k1=1.5, b=0.75)", index.bm25), ("dense (all-MiniLM-L6-v2, flat IP)", index.dense),
                            ("hybrid, RRF (k=60)", rrf), ("hybrid, min-max weighted (0.5)", weighted)]:
        results = retriever.search_many(queries, k=100)
        run = {q: {h.id: h.score for h in hits} for q, hits in zip(qids, results, strict=True)}
        print(f"| {name} | {evaluate(run, dataset.qrels, ['ndcg@10']).mean['ndcg@10']:.4f} |")

    stages: dict[str, list[float]] = {"encode": [], "faiss": [], "bm25": [], "fuse": [], "total": []}
    ids = index.store.ids
    index.dense.encode_queries(queries[:8])  # warm-up
    cpu0 = time.process_time()
    for query in queries:
        t0 = time.perf_counter()
        vector = index.dense.encode_queries([query])
        t1 = time.perf_counter()
        dense = index.dense.rank_vectors(vector, args.candidates)[0]
        t2 = time.perf_counter()
        lexical = index.bm25.rank([query], args.candidates)[0]
        t3 = time.perf_counter()
        rrf.fuse_ranked([(ids[r], s) for r, s in zip(lexical[0].tolist(), lexical[1].tolist(), strict=True)],
                         [(ids[r], s) for r, s in zip(dense[0].tolist(), dense[1].tolist(), strict=True)], args.k)
        t4 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            stages[name].append(value)
    single_cpu_ms = (time.process_time() - cpu0) / len(queries) * 1000
    t0, cpu0 = time.perf_counter(), time.process_time()
    rrf.search_many(queries, k=args.k)
    batch_ms = (time.perf_counter() - t0) / len(queries) * 1000
    batch_cpu_ms = (time.process_time() - cpu0) / len(queries) * 1000

    print()
    print("| stage (one query at a time) | p50 (ms) | p95 (ms) |")
    print("|---|---|---|")
    for name, values in stages.items():
        print(f"| {name} | {pct(values, 50):.2f} | {pct(values, 95):.2f} |")
    print()
    print(f"one query at a time: total p50 {pct(stages['total'], 50):.1f} ms, process CPU {single_cpu_ms:.1f} ms "
          f"per query; the same 300 queries as one search_many batch: {batch_ms:.1f} ms and CPU "
          f"{batch_cpu_ms:.1f} ms per query")


if __name__ == "__main__":
    main()
