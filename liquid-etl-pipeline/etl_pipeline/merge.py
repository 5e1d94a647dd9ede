"""Rebuild the run folder's top-level files from the document shards, deterministically.

Documents are taken in the order of their sources (sorted), records inside a document in chunk
order, so merging the same shards always writes the same bytes; merging again after a crash is
harmless (every file is replaced atomically, ``report.json`` last).

Run folder layout::

    chunks.jsonl          Chunk            (metadata: title, source, tmd, category, hard_split)
    metadata.jsonl        ChunkMetadata    (tags, keywords, entities, importance, category, taxonomy, facts, tmd)
    summaries.jsonl       Summary          (summary + embedding_text)
    qa_pairs.jsonl        QAPair           (after near-duplicate removal)
    validation.jsonl      ValidationResult (one per QA pair)
    ft/train.jsonl        {"messages": [...]}   chat format, valid QA pairs only
    ft/train_alpaca.jsonl {"instruction", "input", "output"}
    ft/samples.jsonl      FineTuneSample   (the same samples with their ids, line by line)
    index/chunks.faiss    IndexFlatIP over unit vectors (cosine), one row per chunk
    index/id_map.json     {"ids": [chunk_id, ...], "model", "dim", "metric"}
    index/metadata.jsonl  one line per row: chunk_id, doc_id, source, position, section_path, tmd, category
    taxonomy.json         topic tree over all documents (count and importance per node)
    manifest.json         every selected document: doc_id, source, content_hash, status, counts, error
    report.json           counts per stage, timings, tokens, memory, boundary report, errors
    docs/<doc_id>/        the shards (resume state)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from etl_pipeline.assemble import merge_taxonomies
from etl_pipeline.chunking import boundary_report
from etl_pipeline.config import EtlConfig
from etl_pipeline.llm_stages import DocStats, StageStats
from etl_pipeline.loaders import SourceItem
from etl_pipeline.shards import ShardRecord, ShardStore
from liquid_shared.schemas import (
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    write_jsonl,
)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_faiss_index(folder: Path, vectors: np.ndarray, ids: list[str], rows: list[dict[str, Any]], dim: int) -> None:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".chunks.faiss.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.replace(tmp, folder / "chunks.faiss")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_jsonl(folder / "metadata.jsonl", rows)
    write_json_atomic(
        folder / "id_map.json",
        {"ids": ids, "model": EMBEDDING_MODEL, "dim": dim, "metric": "inner product of unit vectors (cosine)"},
    )


def merge_run(
    config: EtlConfig,
    selected: Sequence[SourceItem],
    store: ShardStore,
    *,
    this_run: dict[str, Any],
    started_at: float,
    memory: dict[str, Any],
    dim: int,
) -> dict[str, Any]:
    """Write every top-level file of the run folder; returns the report (also in report.json)."""
    out = config.output_dir
    chunks: list[Chunk] = []
    metadata: list[ChunkMetadata] = []
    summaries: list[Summary] = []
    qa_pairs: list[QAPair] = []
    validations: list[ValidationResult] = []
    samples: list[FineTuneSample] = []
    vectors: list[np.ndarray] = []
    trees: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    stage_totals: dict[str, StageStats] = {}
    doc_counts = {"selected": len(selected), "done": 0, "failed": 0, "missing": 0}
    extra_counts = {"qa_generated": 0, "qa_duplicates_removed": 0}

    for item in selected:
        record: ShardRecord | None = store.read_record(item.doc_id)
        if record is None:
            doc_counts["missing"] += 1
            manifest.append({"doc_id": item.doc_id, "source": item.source, "content_hash": item.raw_hash, "status": "missing"})
            errors.append({"doc_id": item.doc_id, "source": item.source, "stage": "run", "error": "not processed (run interrupted?)"})
            continue
        stats = DocStats.from_json(record.stats)
        for name, st in stats.stages.items():
            stage_totals.setdefault(name, StageStats()).add(st)
        for err in stats.errors:
            errors.append({"doc_id": record.doc_id, "source": record.source, **err})
        warnings.extend({"doc_id": record.doc_id, "source": record.source, "warning": w} for w in record.warnings)
        entry = {
            "doc_id": record.doc_id,
            "source": record.source,
            "content_hash": record.content_hash,
            "status": record.status,
            "title": record.title,
            "mime": record.mime,
            "fingerprint": record.fingerprint,
            "counts": record.counts,
            "error": record.error,
        }
        manifest.append(entry)
        if record.status != "done":
            doc_counts["failed"] += 1
            continue
        doc_counts["done"] += 1
        doc_chunks = list(store.read(record.doc_id, "chunks", Chunk))
        chunks.extend(doc_chunks)
        metadata.extend(store.read(record.doc_id, "metadata", ChunkMetadata))
        summaries.extend(store.read(record.doc_id, "summaries", Summary))
        qa_pairs.extend(store.read(record.doc_id, "qa_pairs", QAPair))
        validations.extend(store.read(record.doc_id, "validation", ValidationResult))
        samples.extend(store.read(record.doc_id, "ft", FineTuneSample))
        emb = store.read_array(record.doc_id, "embeddings")
        if emb is None or len(emb) != len(doc_chunks):
            raise RuntimeError(f"shard {record.doc_id} ({record.source}) is damaged: embeddings do not match its chunks")
        vectors.append(emb)
        trees.append(store.read_json(record.doc_id, "taxonomy") or {"name": "", "importance": "low", "count": 0, "children": {}})
        extra_counts["qa_generated"] += record.counts.get("qa_generated", 0)
        extra_counts["qa_duplicates_removed"] += record.counts.get("qa_duplicates", 0)

    write_jsonl(out / "chunks.jsonl", chunks)
    write_jsonl(out / "metadata.jsonl", metadata)
    write_jsonl(out / "summaries.jsonl", summaries)
    write_jsonl(out / "qa_pairs.jsonl", qa_pairs)
    write_jsonl(out / "validation.jsonl", validations)
    write_jsonl(out / "ft" / "samples.jsonl", samples)
    write_jsonl(out / "ft" / "train.jsonl", [s.to_chat_json() for s in samples])
    write_jsonl(out / "ft" / "train_alpaca.jsonl", [s.to_alpaca_json() for s in samples])
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    category = {m.chunk_id: m.category for m in metadata}
    rows = [
        {
            "row": i,
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
            "source": c.metadata.get("source"),
            "position": c.position,
            "section_path": c.section_path,
            "tmd": c.metadata.get("tmd"),
            "category": category.get(c.chunk_id),
        }
        for i, c in enumerate(chunks)
    ]
    write_faiss_index(out / "index", matrix, [c.chunk_id for c in chunks], rows, dim)
    write_json_atomic(out / "taxonomy.json", merge_taxonomies(trees))
    write_json_atomic(
        out / "manifest.json",
        {"fingerprint": config.fingerprint(), "input_dir": str(config.input_dir), "documents": manifest},
    )

    valid = sum(1 for v in validations if v.valid)
    counts = {
        "documents_selected": doc_counts["selected"],
        "documents_done": doc_counts["done"],
        "documents_failed": doc_counts["failed"],
        "chunks": len(chunks),
        "metadata": len(metadata),
        "summaries": len(summaries),
        "qa_generated": extra_counts["qa_generated"],
        "qa_duplicates_removed": extra_counts["qa_duplicates_removed"],
        "qa_pairs": len(qa_pairs),
        "qa_valid": valid,
        "qa_invalid": len(validations) - valid,
        "ft_samples": len(samples),
        "index_vectors": int(matrix.shape[0]),
    }
    stages = {name: vars(st) for name, st in sorted(stage_totals.items())}
    report = {
        "run": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_seconds": round(time.time() - started_at, 3),
            "status": "partial" if doc_counts["failed"] or doc_counts["missing"] else "ok",
            "fingerprint": config.fingerprint(),
            "config": config.model_dump(mode="json"),
        },
        "documents": doc_counts,
        "counts": counts,
        "stages": stages,
        "tokens": {
            "input": sum(st.input_tokens for st in stage_totals.values()),
            "output": sum(st.output_tokens for st in stage_totals.values()),
        },
        "this_run": this_run,
        "memory": memory,
        "chunk_boundaries": boundary_report(chunks, max_tokens=config.max_chunk_tokens),
        "errors": errors,
        "warnings": warnings,
    }
    write_json_atomic(out / "report.json", report)
    return report
