"""Updating an index in place vs rebuilding it, after one document of 200 Wikipedia articles changed.

``python bench/bench_index_update.py --data-dir ../shared/data``

Documents are the articles' paragraphs (16,680, each its own index document, embedded without the
title as ETL chunks are). One article is then edited (every 10th paragraph gets a sentence, one
paragraph is appended) and the index brought up to date three ways, in this one run:

* **update**: ``RagIndex.load`` + ``refresh`` (stored vectors reused by content hash) + ``save``;
* **rebuild, warm cache**: ``RagIndex.build`` + ``save`` with the embedding cache that built the
  first index (only the edited paragraphs miss it);
* **rebuild, cold cache**: the same with an empty embedding cache (every paragraph encoded).

Encoder calls = texts that reached the model (cache misses). Results are compared on 100 queries
(the first sentence of 100 paragraphs): BM25 and dense ids and scores, update vs each rebuild.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from liquid_shared.embeddings import Embedder
from rag_runtime import IndexedDoc, RagIndex

app = typer.Typer(add_completion=False)


class CountingEmbedder:
    """An ``Embedder`` whose model calls are counted (texts that missed its cache)."""

    def __init__(self, cache):
        self.inner = Embedder(cache=cache)
        self.dim = self.inner.dim
        self.encoded = 0
        real = self.inner._encode

        def counted(texts, show_progress):
            self.encoded += len(texts)
            return real(texts, show_progress)

        self.inner._encode = counted

    def encode(self, texts, **kwargs):
        return self.inner.encode(texts, **kwargs)


def paragraphs(path: Path) -> list[tuple[str, str, list[str]]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        art = json.loads(line)
        out.append((str(art["id"]), art["title"], [p["text"] for p in art["paragraphs"]]))
    return out


def as_docs(articles) -> list[IndexedDoc]:
    return [IndexedDoc(id=f"{aid}-{i}", text=text, title=title, metadata={"source": aid}, search_title=False)
            for aid, title, paras in articles for i, text in enumerate(paras)]


def results(index: RagIndex, queries: list[str]) -> dict[str, list]:
    out = {}
    for mode in ("bm25", "dense"):
        rows = index.retriever(mode).rank(queries, k=10)
        out[mode] = [([index.store.ids[int(r)] for r in rr], np.asarray(ss, dtype=np.float64)) for rr, ss in rows]
    return out


def compare(a, b) -> dict:
    same_ids = all(x[0] == y[0] for m in a for x, y in zip(a[m], b[m], strict=True))
    diff = max(float(np.max(np.abs(x[1] - y[1]))) if len(x[1]) and len(x[1]) == len(y[1]) else 0.0
               for m in a for x, y in zip(a[m], b[m], strict=True))
    return {"ids_equal": same_ids, "max_score_difference": diff}


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


@app.command()
def main(data_dir: Annotated[Path, typer.Option("--data-dir", envvar="LIQUID_DATA_DIR", help="The shared evaluation data folder (or LIQUID_DATA_DIR).")],
         seed: Annotated[int, typer.Option(help="Which article is edited, and the query sample.")] = 0,
         articles_limit: Annotated[int, typer.Option("--articles", min=2, help="Use the first N articles (default all 200).")] = 200,
         ) -> None:
    articles = paragraphs(data_dir / "wikipedia" / "articles.jsonl")[:articles_limit]
    rng = random.Random(seed)
    victim = rng.randrange(len(articles))
    aid, title, paras = articles[victim]
    edited = [p + " This paragraph was revised." if i % 10 == 0 else p for i, p in enumerate(paras)]
    edited.append(f"{title} has a new closing paragraph in this revision.")
    changed = [*articles[:victim], (aid, title, edited), *articles[victim + 1:]]
    before, after = as_docs(articles), as_docs(changed)
    queries = [d.text.split(". ")[0] for d in rng.sample(after, 100)]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = CountingEmbedder(tmp / "cache-warm")
        _, first_s = timed(lambda: RagIndex.build(before, embedder=warm).save(tmp / "index"))
        first_calls = warm.encoded

        warm.encoded = 0
        rebuilt_warm, warm_s = timed(lambda: RagIndex.build(after, embedder=warm))
        _, save_s = timed(lambda: rebuilt_warm.save(tmp / "rebuilt-warm"))
        warm_s += save_s
        warm_calls = warm.encoded

        fresh = CountingEmbedder(False)

        def update():
            index = RagIndex.load(tmp / "index")
            report = index.refresh(after, embedder=fresh)
            index.save(tmp / "index")
            return index, report

        (updated, report), update_s = timed(update)

        cold = CountingEmbedder(tmp / "cache-cold")
        rebuilt_cold, cold_s = timed(lambda: RagIndex.build(after, embedder=cold))
        _, save_s = timed(lambda: rebuilt_cold.save(tmp / "rebuilt-cold"))
        cold_s += save_s

        mine = results(RagIndex.load(tmp / "index"), queries)
        out = {
            "documents": len(after), "edited_article": title, "edited_paragraphs": sum(a != b for a, b in zip(paras, edited, strict=False)) + 1,
            "first_build_s": round(first_s, 2), "first_build_encoder_calls": first_calls,
            "update": {"seconds": round(update_s, 2), "encoder_calls": fresh.encoded, "report": report.as_dict()},
            "rebuild_warm": {"seconds": round(warm_s, 2), "encoder_calls": warm_calls},
            "rebuild_cold": {"seconds": round(cold_s, 2), "encoder_calls": cold.encoded},
            "speedup_vs_cold": round(cold_s / update_s, 1), "speedup_vs_warm": round(warm_s / update_s, 1),
            "update_vs_rebuild_warm": compare(mine, results(rebuilt_warm, queries)),
            "update_vs_rebuild_cold": compare(mine, results(rebuilt_cold, queries)),
        }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    app()
