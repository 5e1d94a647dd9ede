"""Rebuild the run folder's top-level files from the document shards, deterministically.

Documents are taken in the order of their sources (sorted), records inside a document in chunk
order, so merging the same shards always writes the same bytes; merging again after a crash is
harmless (every file is replaced atomically, ``report.json`` last). A merge killed mid-write
leaves dot-named temporaries (``.<name>.<random>.tmp``) in the run folder, ``ft/`` or ``index/``;
the next merge deletes them before it writes (``report.json`` lists them under
``removed_temporaries``). This module writes the data files; ``run_index`` writes the index
and ``run_report`` builds ``report.json``.

Run folder layout::

    chunks.jsonl          Chunk            (metadata: title, source, tmd, category, hard_split)
    metadata.jsonl        ChunkMetadata    (tags, keywords, entities, importance, category, taxonomy, facts, tmd)
    summaries.jsonl       Summary          (summary + embedding_text)
    qa_pairs.jsonl        QAPair           (after near-duplicate removal)
    validation.jsonl      ValidationResult (one per QA pair)
    ft/train.jsonl        {"messages": [...]}   chat format, valid QA pairs only
    ft/train_alpaca.jsonl {"instruction", "input", "output"}
    ft/samples.jsonl      FineTuneSample   (the same samples with their ids, line by line)
    index/manifest.json   the rag_runtime index of the chunks (``liquid rag search --index RUN``): BM25 and
    index/v<N>-<hex>/     flat FAISS over the chunk vectors, in a version folder the manifest names
    taxonomy.json         topic tree over all documents (count and importance per node)
    manifest.json         every selected document: doc_id, source, content_hash, status, counts, error
    report.json           counts per stage, timings, tokens, memory, boundary report, errors
    docs/<doc_id>/        the shards (resume state)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from etl_pipeline.assemble import merge_taxonomies
from etl_pipeline.config import EtlConfig
from etl_pipeline.llm_stages import DocStats, StageStats
from etl_pipeline.loaders import SourceItem
from etl_pipeline.run_index import write_run_index
from etl_pipeline.run_report import build_report
from etl_pipeline.shards import ShardDamaged, ShardRecord, ShardStore
from etl_pipeline.trust import ft_card, trust_statement
from liquid_shared.atomic import remove_temporaries, write_json_atomic, write_text_atomic
from liquid_shared.schemas import (
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    write_jsonl,
)


@dataclass
class MergedRun:
    """Every record of the run's done documents, in merge order, and the per-document accounting."""

    chunks: list[Chunk] = field(default_factory=list)
    metadata: list[ChunkMetadata] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    qa_pairs: list[QAPair] = field(default_factory=list)
    validations: list[ValidationResult] = field(default_factory=list)
    samples: list[FineTuneSample] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    trees: list[dict[str, Any]] = field(default_factory=list)
    manifest: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    stage_totals: dict[str, StageStats] = field(default_factory=dict)
    doc_counts: dict[str, int] = field(default_factory=dict)
    qa_generated: int = 0
    qa_duplicates_removed: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)


def _missing(merged: MergedRun, item: SourceItem, reason: str) -> None:
    merged.doc_counts["missing"] += 1
    merged.manifest.append({"doc_id": item.doc_id, "source": item.source, "content_hash": item.raw_hash, "status": "missing"})
    merged.errors.append({"doc_id": item.doc_id, "source": item.source, "stage": "run", "error": reason})


def collect_shards(selected: Sequence[SourceItem], store: ShardStore) -> MergedRun:
    """Read the shards of ``selected`` in order; a shard found damaged here is moved aside."""
    merged = MergedRun(doc_counts={"selected": len(selected), "done": 0, "failed": 0, "missing": 0})
    for item in selected:
        try:
            record: ShardRecord | None = store.check_record(item.doc_id)
            doc = store.load_done(record) if record is not None and record.status == "done" else None
        except ShardDamaged as exc:  # damaged after the runner's check: the next run re-does it
            merged.damaged.append(store.quarantine(item.doc_id, item.source, exc.reason))
            _missing(merged, item, f"its shard was damaged ({exc.reason}); moved aside, re-done next run")
            continue
        if record is None:
            _missing(merged, item, "not processed (run interrupted?)")
            continue
        stats = DocStats.from_json(record.stats)
        for name, st in stats.stages.items():
            merged.stage_totals.setdefault(name, StageStats()).add(st)
        for err in stats.errors:
            merged.errors.append({"doc_id": record.doc_id, "source": record.source, **err})
        merged.warnings.extend({"doc_id": record.doc_id, "source": record.source, "warning": w} for w in record.warnings)
        merged.manifest.append(
            {
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
        )
        if record.status != "done":
            merged.doc_counts["failed"] += 1
            continue
        merged.doc_counts["done"] += 1
        assert doc is not None
        merged.chunks.extend(doc.chunks)
        merged.metadata.extend(doc.metadata)
        merged.summaries.extend(doc.summaries)
        merged.qa_pairs.extend(doc.qa_pairs)
        merged.validations.extend(doc.validations)
        merged.samples.extend(doc.samples)
        merged.vectors.append(doc.embeddings)
        merged.trees.append(doc.taxonomy or {"name": "", "importance": "low", "count": 0, "children": {}})
        merged.qa_generated += record.counts.get("qa_generated", 0)
        merged.qa_duplicates_removed += record.counts.get("qa_duplicates", 0)
    return merged


MERGE_FOLDERS = ("", "ft", "index")
"""The folders (relative to the run folder) the merge writes files into."""


def remove_stale_temporaries(out) -> list[str]:
    """Delete the temporaries an earlier, killed merge left in the folders it writes; returns their paths.

    Safe because the merge runs under the run folder's lock: no other process writes there.
    """
    swept = []
    for sub in MERGE_FOLDERS:
        folder = out / sub if sub else out
        swept.extend(f"{sub}/{name}" if sub else name for name in remove_temporaries(folder))
    return swept


def merge_run(
    config: EtlConfig,
    selected: Sequence[SourceItem],
    store: ShardStore,
    *,
    this_run: dict[str, Any],
    started_at: float,
    memory: dict[str, Any],
    dim: int,
    run_notes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every top-level file of the run folder; returns the report (also in report.json).

    ``run_notes`` (from the runner: skipped sources, repaired shards, what setting changed) go
    into the report as they are; its ``errors`` also count towards a partial status.
    """
    out = config.output_dir
    swept = remove_stale_temporaries(out)
    m = collect_shards(selected, store)
    write_jsonl(out / "chunks.jsonl", m.chunks)
    write_jsonl(out / "metadata.jsonl", m.metadata)
    write_jsonl(out / "summaries.jsonl", m.summaries)
    write_jsonl(out / "qa_pairs.jsonl", m.qa_pairs)
    write_jsonl(out / "validation.jsonl", m.validations)
    write_jsonl(out / "ft" / "samples.jsonl", m.samples)
    write_jsonl(out / "ft" / "train.jsonl", [s.to_chat_json() for s in m.samples])
    write_jsonl(out / "ft" / "train_alpaca.jsonl", [s.to_alpaca_json() for s in m.samples])
    trust = trust_statement(config)
    write_text_atomic(out / "ft" / "README.md", ft_card(config, trust, len(m.samples)))
    matrix = np.concatenate(m.vectors) if m.vectors else np.zeros((0, dim), dtype=np.float32)
    index_update = write_run_index(out / "index", m.chunks, m.metadata, matrix, source=str(config.input_dir))
    write_json_atomic(out / "taxonomy.json", merge_taxonomies(m.trees))
    write_json_atomic(
        out / "manifest.json",
        {"fingerprint": config.fingerprint(), "input_dir": str(config.input_dir), "documents": m.manifest},
    )
    notes = {**(run_notes or {}), "removed_temporaries": swept, "index_update": index_update}
    report = build_report(
        config, m, n_vectors=int(matrix.shape[0]), this_run=this_run, started_at=started_at, memory=memory, run_notes=notes,
        trust=trust,
    )
    write_json_atomic(out / "report.json", report)
    return report
