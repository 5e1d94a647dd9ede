"""Data-quality checks over a finished run folder: ``python -m etl_pipeline.quality RUN_DIR``.

* **Sequential coherence**: cosine similarity of each chunk with the next chunk of the same
  document (the vectors of the FAISS index), compared with a baseline of chunk pairs drawn from
  *different* documents. Consecutive chunks of a coherent document should be clearly closer
  than random pairs; neighbours below ``low_threshold`` are listed for inspection.
* **Chunk boundaries**: the boundary report (sentence-complete ends, token lengths) plus the
  share of chunks that start like a sentence (capital letter, digit, quote, list or heading mark).
* **TMD distribution**: counts per domain, task and modifier and per full code, with the share
  of the most common code (one code for everything means the labelling says nothing).

Writes ``quality.json`` into the run folder and returns the same dict.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from etl_pipeline.chunking import boundary_report
from etl_pipeline.tmd import tmd_distribution
from liquid_shared.atomic import write_json_atomic
from liquid_shared.schemas import Chunk, read_jsonl


def _load_vectors(run_dir: Path, chunk_ids: list[str]) -> np.ndarray:
    from rag_runtime.dense import stored_vectors
    from rag_runtime.index import RagIndex

    index = RagIndex.load(run_dir)
    if index.dense is None or index.store.ids != chunk_ids:
        raise ValueError(f"{run_dir}: the index in index/ does not list the chunks of chunks.jsonl in order")
    return stored_vectors(index.dense.index)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": float(statistics.fmean(values)),
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def sequential_coherence(chunks: list[Chunk], vectors: np.ndarray, *, low_threshold: float = 0.2, seed: int = 0) -> dict[str, Any]:
    by_doc: dict[str, list[int]] = {}
    for row, chunk in enumerate(chunks):
        by_doc.setdefault(chunk.doc_id, []).append(row)
    neighbours: list[float] = []
    low: list[dict[str, Any]] = []
    for rows in by_doc.values():
        rows.sort(key=lambda r: chunks[r].position)
        for a, b in zip(rows, rows[1:], strict=False):
            cos = float(vectors[a] @ vectors[b])
            neighbours.append(cos)
            if cos < low_threshold:
                low.append({"doc_id": chunks[a].doc_id, "positions": [chunks[a].position, chunks[b].position], "cosine": cos})
    rng = np.random.default_rng(seed)
    baseline: list[float] = []
    if len(by_doc) > 1:
        doc_of = np.array([c.doc_id for c in chunks])
        for _ in range(min(2000, 20 * max(1, len(neighbours)))):
            a, b = rng.integers(0, len(chunks), size=2)
            if doc_of[a] != doc_of[b]:
                baseline.append(float(vectors[a] @ vectors[b]))
    result = {"neighbours": _stats(neighbours), "cross_document_baseline": _stats(baseline), "low_pairs": low[:50]}
    if neighbours and baseline:
        result["lift"] = float(statistics.fmean(neighbours) - statistics.fmean(baseline))
    return result


def _starts_cleanly(text: str) -> bool:
    head = text.lstrip()[:1]
    return bool(head) and (head.isupper() or head.isdigit() or head in "\"'“‘(#-*`[")


def check_run(run_dir: Path, *, max_tokens: int | None = None, write: bool = True) -> dict[str, Any]:
    """Run every check over ``run_dir``; writes ``quality.json`` unless ``write=False``."""
    run_dir = Path(run_dir)
    chunks_file = run_dir / "chunks.jsonl"
    if not chunks_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run folder (no chunks.jsonl)")
    chunks = list(read_jsonl(chunks_file, Chunk))
    vectors = _load_vectors(run_dir, [c.chunk_id for c in chunks])
    boundaries = boundary_report(chunks, max_tokens=max_tokens)
    boundaries["clean_start_share"] = sum(_starts_cleanly(c.text) for c in chunks) / len(chunks) if chunks else 1.0
    codes = [c.metadata["tmd"] for c in chunks if c.metadata.get("tmd")]
    tmd = tmd_distribution(codes)
    top = max(tmd["code"].values(), default=0)
    report = {
        "chunks": len(chunks),
        "documents": len({c.doc_id for c in chunks}),
        "sequential_coherence": sequential_coherence(chunks, vectors),
        "chunk_boundaries": boundaries,
        "tmd": {"distribution": tmd, "distinct_codes": len(tmd["code"]), "top_code_share": top / len(codes) if codes else 0.0},
    }
    if write:
        write_json_atomic(run_dir / "quality.json", report)
    return report


def main(
    run_dir: Annotated[Path, typer.Argument(help="A finished ETL run folder (with chunks.jsonl and index/).")],
    max_tokens: Annotated[int | None, typer.Option(help="Count chunks above this many tokens.")] = None,
) -> None:
    """Data-quality checks over a finished ETL run: sequential coherence, chunk boundaries, TMD distribution."""
    from rich.console import Console
    from rich.table import Table

    try:
        report = check_run(run_dir, max_tokens=max_tokens)
    except (FileNotFoundError, ValueError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"quality of {run_dir}")
    table.add_column("check")
    table.add_column("value", justify="right")
    coh = report["sequential_coherence"]
    table.add_row("neighbour cosine (mean)", f"{coh['neighbours'].get('mean', float('nan')):.3f}")
    table.add_row("cross-document cosine (mean)", f"{coh['cross_document_baseline'].get('mean', float('nan')):.3f}")
    table.add_row("low-coherence neighbours", str(len(coh["low_pairs"])))
    b = report["chunk_boundaries"]
    table.add_row("sentence-complete ends", f"{b['sentence_complete_share']:.1%}")
    table.add_row("terminal punctuation ends", f"{b['terminal_punctuation_share']:.1%}")
    table.add_row("clean starts", f"{b['clean_start_share']:.1%}")
    table.add_row("tokens median / max", f"{b['tokens']['median']:.0f} / {b['tokens']['max']}")
    table.add_row("distinct TMD codes", str(report["tmd"]["distinct_codes"]))
    table.add_row("top TMD code share", f"{report['tmd']['top_code_share']:.1%}")
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
