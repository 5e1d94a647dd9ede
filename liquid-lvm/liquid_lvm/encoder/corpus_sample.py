"""A seeded random sample of a BEIR corpus written as one JSONL file, the input of an ETL run.

The sample is drawn from the corpus ids alone (never from any qrels), so generated questions
over it say nothing about which documents the test queries judge. Records keep their BEIR
``_id`` (the ETL keeps extra string fields as document metadata) and are written in sampled
order, so ``run_etl --limit K`` on the file processes a random sample of K documents too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from liquid_shared.data.beir import CORPUS_FILE, read_corpus

SAMPLE_FILE = "corpus_sample.jsonl"


def write_corpus_sample(beir_dir: Path | str, out_dir: Path | str, n_docs: int, seed: int = 0) -> Path:
    """Write ``n_docs`` documents of ``beir_dir``'s corpus, drawn with ``seed``, to ``out_dir``/corpus_sample.jsonl."""
    corpus = read_corpus(Path(beir_dir) / CORPUS_FILE)
    if n_docs < 1:
        raise ValueError(f"n_docs must be at least 1, got {n_docs}")
    ids = sorted(corpus)
    chosen = random.Random(seed).sample(ids, min(n_docs, len(ids)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / SAMPLE_FILE
    with path.open("w", encoding="utf-8") as fh:
        for doc_id in chosen:
            doc = corpus[doc_id]
            fh.write(json.dumps({"_id": doc_id, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
    return path
