"""Benchmark of the rag_quality experiment: shared candidate lists against per-variant searches.

rag_quality ranks every query once with BM25 and once with the dense index (``candidates`` deep)
and fuses those lists for each hybrid variant. The alternative is to call each variant's own
``search_many`` (what a user of rag_runtime would write): hybrid RRF and hybrid weighted then
search BM25 and FAISS again. Both must give the same rankings; this script checks that and
prints the two times and their ratio, then (with ``--full``) the wall time of the whole
experiment (load, index, search, metrics, significance, reports, MLflow).

    python bench/bench_experiments.py --dataset ../shared/data/beir/scifact
    python bench/bench_experiments.py --dataset ../shared/data/beir/scifact --full
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="A BEIR folder (or an ETL run folder).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--full", action="store_true", help="Also time the whole rag_quality experiment.")
    args = parser.parse_args()

    from experiments.eval_data import load_retrieval_dataset
    from experiments.retrieval_variants import DEFAULT_VARIANTS, run_variants
    from liquid_shared.embeddings import get_embedder
    from rag_runtime import HybridRetriever, RagIndex

    data = load_retrieval_dataset(args.dataset, args.split)
    queries = data.queries
    texts = list(queries.values())
    t0 = time.perf_counter()
    index = RagIndex.build(data.docs)
    print(f"{data.name}: {len(data.docs)} documents, {len(queries)} queries; index built in "
          f"{time.perf_counter() - t0:.1f} s")
    variants = [v for v in DEFAULT_VARIANTS if not v.metadata_boost]
    encoder = get_embedder(index.dense.params.embedding_model)
    encoder.encode(texts)  # warm: both approaches then read the query vectors from the same cache
    scratch = tempfile.TemporaryDirectory()
    naive_index = RagIndex.load(index.save(Path(scratch.name) / "index"), encoder=encoder)

    t0 = time.perf_counter()
    shared = run_variants(index, queries, variants, k=args.k, candidates=100, boost_factor=1.0)
    shared_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    naive = {}
    for spec in variants:
        if spec.retriever == "hybrid":
            retriever = HybridRetriever(naive_index.bm25, naive_index.dense, fusion=spec.fusion,
                                        dense_weight=spec.dense_weight, candidates=100)
        else:
            retriever = naive_index.retriever(spec.retriever)
        hits = retriever.search_many(texts, args.k)
        naive[spec.name] = {q: {h.id: h.score for h in row} for q, row in zip(queries, hits, strict=True)}
    naive_s = time.perf_counter() - t0

    for name in naive:
        same_ids = all(list(naive[name][q]) == list(shared.runs[name][q]) for q in queries)
        close = all(abs(naive[name][q][d] - shared.runs[name][q][d]) < 1e-5 for q in queries for d in naive[name][q])
        print(f"  {name:16s} identical rankings: {same_ids and close}")
    print(f"shared candidate lists: {shared_s:.2f} s; per-variant search_many: {naive_s:.2f} s; "
          f"ratio {naive_s / shared_s:.2f}x")
    scratch.cleanup()

    if args.full:
        from rich.console import Console

        from experiments.config_file import ConfigFile
        from experiments.registry import get_experiment
        from experiments.runner import run_experiments

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            outcome = run_experiments([get_experiment("rag_quality")], ConfigFile(), {"dataset": args.dataset},
                                      Path(tmp), f"sqlite:///{tmp}/mlruns.db", Console(stderr=True))[0]
            print(f"whole rag_quality experiment: {time.perf_counter() - t0:.1f} s ({outcome.status})")


if __name__ == "__main__":
    main()
