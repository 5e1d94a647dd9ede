"""Benchmark: our BM25 (bm25s underneath) versus rank-bm25 ``BM25Okapi`` on BEIR SciFact, one run.

    .venv/bin/python bench/bench_bm25.py                        # ../shared/data/beir/scifact
    .venv/bin/python bench/bench_bm25.py --scifact DIR --repeats 3

Both sides get the same token lists (``rag_runtime.Bm25Tokenizer``: lower-case, scikit-learn's
token pattern, NLTK English stopwords, Snowball English stemmer) and the same parameters
(k1=1.5, b=0.75, epsilon=0.25), so their scores must agree. Tokenisation is timed once and
reported apart; the timed part is indexing, and retrieving the top 100 (ids and scores) for the
300 test queries (rank-bm25: ``get_scores`` then a numpy top-100; ours:
``Bm25Retriever.rank_tokens``). An extra line times ``search_tokens``, which also builds ``Hit``
objects (text, metadata) for every one of the 100 hits. Each side's query time is the best of
``--repeats`` runs. nDCG@10 comes from
``liquid_shared.metrics.ir.evaluate`` on both runs; the largest score difference is printed.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=100, help="hits kept per query for nDCG")
    args = parser.parse_args()
    if not (args.scifact / "corpus.jsonl").is_file():
        raise SystemExit(f"SciFact not found at {args.scifact} (pass --scifact DIR)")

    from rank_bm25 import BM25Okapi

    from liquid_shared.data import load_beir
    from liquid_shared.metrics.ir import evaluate
    from rag_runtime import Bm25Retriever, Bm25Tokenizer, DocStore, load_beir_corpus

    dataset = load_beir(args.scifact, split="test")
    docs = load_beir_corpus(args.scifact)
    store = DocStore(docs)
    qids = list(dataset.queries)
    tokenizer = Bm25Tokenizer()
    t0 = time.perf_counter()
    corpus_tokens = tokenizer([d.search_text for d in docs])
    query_tokens = tokenizer([dataset.queries[q] for q in qids])
    tokenise_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = Bm25Retriever.from_tokens(store, corpus_tokens)
    ours_index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = BM25Okapi(corpus_tokens, k1=1.5, b=0.75, epsilon=0.25)
    ref_index_s = time.perf_counter() - t0

    ids = store.ids

    def run_ours():
        results = ours.rank_tokens(query_tokens, k=args.k)
        return {q: {ids[r]: s for r, s in zip(rows.tolist(), scores.tolist(), strict=True)}
                for q, (rows, scores) in zip(qids, results, strict=True)}

    def run_ours_hits():
        return ours.search_tokens(query_tokens, k=args.k)

    def run_reference():
        run = {}
        for q, tokens in zip(qids, query_tokens, strict=True):
            scores = reference.get_scores(tokens)
            top = np.argpartition(-scores, args.k)[: args.k]
            run[q] = {store.ids[i]: float(scores[i]) for i in top if scores[i] > 0}
        return run

    def best_of(fn):
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    ours_s, ours_run = best_of(run_ours)
    hits_s, _ = best_of(run_ours_hits)
    ref_s, ref_run = best_of(run_reference)
    ndcg_ours = evaluate(ours_run, dataset.qrels, ["ndcg@10"]).mean["ndcg@10"]
    ndcg_ref = evaluate(ref_run, dataset.qrels, ["ndcg@10"]).mean["ndcg@10"]
    max_diff = max(
        float(np.max(np.abs(ours.score_tokens(t) - reference.get_scores(t)))) for t in query_tokens[:50]
    )
    n = len(qids)
    print(f"# BM25 on SciFact test: {len(docs)} docs, {n} queries, top {args.k}; "
          f"python {platform.python_version()}, bm25s {version('bm25s')}, rank-bm25 {version('rank-bm25')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"tokenisation (shared, both sides): {tokenise_s:.2f} s")
    print()
    print("| implementation | index (s) | 300 queries (s) | queries/s | nDCG@10 |")
    print("|---|---|---|---|---|")
    print(f"| rank-bm25 BM25Okapi | {ref_index_s:.2f} | {ref_s:.3f} | {n / ref_s:,.0f} | {ndcg_ref:.4f} |")
    print(f"| rag_runtime Bm25Retriever (bm25s) | {ours_index_s:.2f} | {ours_s:.3f} | {n / ours_s:,.0f} | {ndcg_ours:.4f} |")
    print(f"| rag_runtime, returning full `Hit` objects (text, metadata) | | {hits_s:.3f} | {n / hits_s:,.0f} | |")
    print()
    print(f"speed-up (queries/s): {ref_s / ours_s:.1f}x; nDCG@10 difference {abs(ndcg_ours - ndcg_ref):.4f}; "
          f"largest score difference over 50 queries {max_diff:.2e}")


if __name__ == "__main__":
    main()
