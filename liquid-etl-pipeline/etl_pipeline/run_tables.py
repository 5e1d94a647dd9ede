"""A run folder's records as flat tables, one fixed schema per table.

The JSONL files of a run hold nested and optional fields (a chunk's ``metadata`` dict, a
metadata record's ``category`` that is sometimes null, chat ``messages``), so a reader that
infers a schema per file (``datasets.load_dataset`` on the JSONL) can meet two schemas for one
column. Here every record is read back through its ``liquid_shared.schemas`` model (defaults
filled in) and flattened to the columns of ``SCHEMAS``: the same columns, types and order for
every run. A chunk's metadata keeps its known keys as columns and the whole dict as a JSON
string (``metadata_json``), so a key added later is not lost.

``run_tables(run_dir)`` reads the tables a run has; ``require_run_folder`` says clearly why a
folder is not a run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from liquid_shared.schemas import (
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    read_jsonl,
)


class NotARunError(ValueError):
    """The folder is not a finished ETL run folder (or has nothing to read); the message names it."""


_str_list = pa.list_(pa.string())
_messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

SCHEMAS: dict[str, pa.Schema] = {
    "chunks": pa.schema([
        ("chunk_id", pa.string()), ("doc_id", pa.string()), ("text", pa.string()), ("position", pa.int64()),
        ("section_path", _str_list), ("start_char", pa.int64()), ("end_char", pa.int64()), ("n_tokens", pa.int64()),
        ("title", pa.string()), ("source", pa.string()), ("tmd", pa.string()), ("category", pa.string()),
        ("hard_split", pa.bool_()), ("metadata_json", pa.string()),
    ]),
    "metadata": pa.schema([
        ("chunk_id", pa.string()), ("tags", _str_list), ("keywords", _str_list), ("entities", _str_list),
        ("importance", pa.string()), ("section", pa.string()), ("category", pa.string()), ("taxonomy", _str_list),
        ("facts", _str_list), ("tmd", pa.string()), ("source", pa.string()),
    ]),
    "summaries": pa.schema([
        ("chunk_id", pa.string()), ("summary", pa.string()), ("embedding_text", pa.string()), ("source", pa.string()),
    ]),
    "qa_pairs": pa.schema([
        ("qa_id", pa.string()), ("chunk_id", pa.string()), ("doc_id", pa.string()), ("question", pa.string()),
        ("answer", pa.string()), ("question_type", pa.string()),
    ]),
    "validation": pa.schema([
        ("qa_id", pa.string()), ("valid", pa.bool_()), ("grounded", pa.bool_()), ("judge_score", pa.float64()),
        ("grounding_score", pa.float64()), ("reasons", _str_list), ("answer_span", pa.string()),
    ]),
    "ft": pa.schema([
        ("sample_id", pa.string()), ("qa_id", pa.string()), ("chunk_id", pa.string()), ("messages", _messages),
    ]),
}
"""The columns of each table, in order (strings may be null where the record's field is optional)."""


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _chunk_row(c: Chunk) -> dict[str, Any]:
    meta = c.metadata
    return {
        "chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text, "position": c.position,
        "section_path": [str(s) for s in c.section_path], "start_char": c.start_char, "end_char": c.end_char,
        "n_tokens": c.n_tokens, "title": str(meta.get("title") or ""), "source": str(meta.get("source") or ""),
        "tmd": _opt_str(meta.get("tmd")), "category": _opt_str(meta.get("category")),
        "hard_split": bool(meta.get("hard_split", False)),
        "metadata_json": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str),
    }


def _metadata_row(m: ChunkMetadata) -> dict[str, Any]:
    return {
        "chunk_id": m.chunk_id, "tags": list(m.tags), "keywords": list(m.keywords), "entities": list(m.entities),
        "importance": m.importance.value, "section": m.section, "category": m.category, "taxonomy": list(m.taxonomy),
        "facts": list(m.facts), "tmd": m.tmd, "source": m.source,
    }


def _summary_row(s: Summary) -> dict[str, Any]:
    return {"chunk_id": s.chunk_id, "summary": s.summary, "embedding_text": s.embedding_text, "source": s.source}


def _qa_row(p: QAPair) -> dict[str, Any]:
    return {"qa_id": p.qa_id, "chunk_id": p.chunk_id, "doc_id": p.doc_id, "question": p.question, "answer": p.answer,
            "question_type": p.question_type.value}


def _validation_row(v: ValidationResult) -> dict[str, Any]:
    return {"qa_id": v.qa_id, "valid": v.valid, "grounded": v.grounded, "judge_score": v.judge_score,
            "grounding_score": float(v.grounding_score), "reasons": list(v.reasons), "answer_span": v.answer_span}


def _ft_row(s: FineTuneSample) -> dict[str, Any]:
    return {"sample_id": s.sample_id, "qa_id": s.qa_id, "chunk_id": s.chunk_id,
            "messages": [{"role": m.role, "content": m.content} for m in s.messages]}


@dataclass(frozen=True)
class TableSource:
    """Where a table comes from in the run folder and how one record becomes a row."""

    name: str
    path: str
    model: type
    row: Callable[[Any], dict[str, Any]]
    description: str


TABLE_SOURCES: tuple[TableSource, ...] = (
    TableSource("chunks", "chunks.jsonl", Chunk, _chunk_row,
                "the chunks of every processed document, in document and position order"),
    TableSource("metadata", "metadata.jsonl", ChunkMetadata, _metadata_row,
                "per chunk: tags, keywords, entities, importance, category, taxonomy path, facts, TMD code"),
    TableSource("summaries", "summaries.jsonl", Summary, _summary_row, "per chunk: a summary and the text to embed"),
    TableSource("qa_pairs", "qa_pairs.jsonl", QAPair, _qa_row,
                "generated question-answer pairs (after near-duplicate removal), each with its source chunk"),
    TableSource("validation", "validation.jsonl", ValidationResult, _validation_row,
                "one verdict per QA pair: valid, grounded, judge score, rejection reasons"),
    TableSource("ft", "ft/samples.jsonl", FineTuneSample, _ft_row,
                "chat-format fine-tuning samples (the valid QA pairs; the same samples as ft/train.jsonl)"),
)


def iter_rows(run_dir: Path, source: TableSource) -> Iterator[dict[str, Any]]:
    for record in read_jsonl(Path(run_dir) / source.path, source.model):
        yield source.row(record)


def read_table(run_dir: Path, source: TableSource) -> pa.Table:
    """One table of the run as an Arrow table with the fixed schema (``ValueError`` naming a bad line)."""
    return pa.Table.from_pylist(list(iter_rows(run_dir, source)), schema=SCHEMAS[source.name])


def available_sources(run_dir: Path) -> list[TableSource]:
    """The tables whose file the run folder has."""
    return [s for s in TABLE_SOURCES if (Path(run_dir) / s.path).is_file()]


def require_run_folder(run_dir: Path) -> Path:
    """``run_dir`` if it is an ETL run folder (has ``chunks.jsonl``), else ``NotARunError`` naming it."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise NotARunError(f"{run_dir} does not exist (give an ETL run folder, e.g. data/runs/samples-offline)")
    if not run_dir.is_dir():
        raise NotARunError(f"{run_dir} is not a folder (give an ETL run folder, e.g. data/runs/samples-offline)")
    if not (run_dir / "chunks.jsonl").is_file():
        raise NotARunError(f"{run_dir} is not an ETL run folder: it has no chunks.jsonl "
                           "(run `python -m etl_pipeline.run_etl INPUT -o RUN` first)")
    return run_dir


def read_report(run_dir: Path) -> dict[str, Any]:
    """The run's ``report.json`` (empty when missing or unreadable: the card then says less)."""
    path = Path(run_dir) / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
