"""Which text to embed for a chunk: its text alone, or its document title and its text?

``python -m experiments.embed_text_choice --data-dir ../shared/data``

Dense retrieval (all-MiniLM-L6-v2, flat inner product) of each question's paragraph on SQuAD v2
(3 dev articles, 384 answerable questions, the corpus = their 100 paragraphs) and of SciFact
*train* claims' abstracts (809 queries; the train split, so the choice is not tuned on test).
Prints nDCG@10 and recall@10 for both texts; the ETL and ``build-index`` then embed the winner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from liquid_shared.data import load_beir
from liquid_shared.data.squad import load_squad_retrieval
from liquid_shared.embeddings import Embedder
from liquid_shared.metrics.ir import evaluate

app = typer.Typer(add_completion=False)


def _scores(dataset, texts_of, embedder: Embedder, k: int = 10) -> dict[str, float]:
    ids = list(dataset.corpus)
    docs = embedder.encode([texts_of(dataset.corpus[i]) for i in ids])
    qids = list(dataset.qrels)
    queries = embedder.encode([dataset.queries[q] for q in qids])
    sims = queries @ docs.T
    top = np.argsort(-sims, axis=1)[:, :k]
    run = {q: {ids[j]: float(sims[r, j]) for j in top[r]} for r, q in enumerate(qids)}
    return {name: round(float(value), 4) for name, value in evaluate(run, dataset.qrels, ["ndcg@10", "recall@10"]).mean.items()}


@app.command()
def main(data_dir: Annotated[Path, typer.Option("--data-dir", envvar="LIQUID_DATA_DIR", help="The shared evaluation data folder (or LIQUID_DATA_DIR).")]) -> None:
    embedder = Embedder()
    sets = {
        "squad-dev-3articles": load_squad_retrieval(data_dir / "squad" / "dev-v2.0-3articles.json"),
        "scifact-train": load_beir(data_dir / "beir" / "scifact", split="train"),
    }
    out = {}
    for name, dataset in sets.items():
        out[name] = {
            "text": _scores(dataset, lambda d: d.text, embedder),
            "title + text": _scores(dataset, lambda d: f"{d.title} {d.text}".strip() if d.title else d.text, embedder),
            "queries": len(dataset.qrels), "docs": len(dataset.corpus),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app()
