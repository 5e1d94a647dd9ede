"""Per-document shards: the unit of exactly-once resume.

A document's records are written into ``<out>/docs/.tmp-<doc_id>-<pid>/`` (every file fsynced,
``record.json`` last) and the folder is then renamed to ``<out>/docs/<doc_id>/`` in one
``rename``. A document is *done* exactly when its shard folder exists under its final name, so
a run killed at any instant leaves each document either fully done or not done at all; leftover
temporary folders are deleted at the next start.

A shard that is there but damaged (a truncated file, a line that does not parse, embeddings
that do not match its chunks; disk trouble or a hand edit) raises ``ShardDamaged`` when it is
loaded; the runner then moves it aside into ``<out>/quarantine/`` with the reason and does the
document again, and ``report.json`` lists it under ``repaired_shards``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from liquid_shared.atomic import atomic_dir, fsync_dir
from liquid_shared.schemas import (
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    read_jsonl,
)

R = TypeVar("R", bound=BaseModel)

SHARD_FILES = ("chunks", "metadata", "summaries", "qa_pairs", "validation", "ft")
"""The JSONL files of a done shard (``<name>.jsonl``)."""


class ShardRecord(BaseModel):
    """``record.json``: who the document is, how its processing ended, and its accounting."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    source: str
    content_hash: str
    status: Literal["done", "failed"]
    fingerprint: str
    settings: dict[str, Any] = Field(default_factory=dict)
    """The settings the fingerprint hashes (so a later run can say which one changed)."""
    title: str = ""
    mime: str = ""
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class ShardDamaged(ValueError):
    """A shard folder exists but cannot be read back whole; ``reason`` says what is wrong."""

    def __init__(self, doc_id: str, reason: str):
        super().__init__(f"shard {doc_id}: {reason}")
        self.doc_id = doc_id
        self.reason = reason


@dataclass
class DoneShard:
    """Every record of a done document, read back and checked."""

    chunks: list[Chunk]
    metadata: list[ChunkMetadata]
    summaries: list[Summary]
    qa_pairs: list[QAPair]
    validations: list[ValidationResult]
    samples: list[FineTuneSample]
    embeddings: np.ndarray
    taxonomy: dict[str, Any] | None


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _jsonl_bytes(records: Sequence[BaseModel]) -> bytes:
    return "".join(r.model_dump_json() + "\n" for r in records).encode("utf-8")


class ShardStore:
    """The ``docs/`` folder of a run."""

    def __init__(self, run_dir: Path):
        self.root = Path(run_dir) / "docs"

    def path(self, doc_id: str) -> Path:
        return self.root / doc_id

    def read_record(self, doc_id: str) -> ShardRecord | None:
        path = self.path(doc_id) / "record.json"
        if not path.is_file():
            return None
        try:
            return ShardRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError:
            return None  # a record from an older version: reprocess the document

    def write(
        self,
        record: ShardRecord,
        records: dict[str, Sequence[BaseModel]] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        extra_json: dict[str, Any] | None = None,
    ) -> Path:
        """Write a shard atomically (replacing an older shard of the same document)."""
        with atomic_dir(self.path(record.doc_id), prefix=f".tmp-{record.doc_id}-{os.getpid()}") as tmp:
            for name in SHARD_FILES:
                _write_file(tmp / f"{name}.jsonl", _jsonl_bytes((records or {}).get(name, [])))
            for name, array in (arrays or {}).items():
                with (tmp / f"{name}.npy").open("wb") as fh:
                    np.save(fh, np.ascontiguousarray(array, dtype=np.float32))
                    fh.flush()
                    os.fsync(fh.fileno())
            for name, obj in (extra_json or {}).items():
                _write_file(tmp / f"{name}.json", json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8"))
            _write_file(tmp / "record.json", record.model_dump_json(indent=1).encode("utf-8"))
        return self.path(record.doc_id)

    def check_record(self, doc_id: str) -> ShardRecord | None:
        """The record of a shard folder, ``None`` when there is none; ``ShardDamaged`` when it does not parse."""
        folder = self.path(doc_id)
        if not folder.exists():
            return None
        path = folder / "record.json"
        if not path.is_file():
            raise ShardDamaged(doc_id, "record.json is missing")
        try:
            record = ShardRecord.model_validate_json(path.read_bytes())
        except (ValueError, OSError) as exc:
            raise ShardDamaged(doc_id, f"record.json does not parse ({_short(exc)})") from None
        if record.doc_id != doc_id:
            raise ShardDamaged(doc_id, f"record.json names another document ({record.doc_id})")
        return record

    def load_done(self, record: ShardRecord) -> DoneShard:
        """Read every file of a done shard and check they agree; ``ShardDamaged`` if not."""
        doc_id = record.doc_id
        folder = self.path(doc_id)

        def part(file: str, read):
            try:
                return read()
            except FileNotFoundError:
                raise ShardDamaged(doc_id, f"{file} is missing") from None
            except (ValueError, OSError, EOFError) as exc:
                raise ShardDamaged(doc_id, f"{file} is damaged: {_short(exc).replace(str(folder) + '/', '')}") from None

        shard = DoneShard(
            chunks=part("chunks.jsonl", lambda: list(self._read_strict(doc_id, "chunks", Chunk))),
            metadata=part("metadata.jsonl", lambda: list(self._read_strict(doc_id, "metadata", ChunkMetadata))),
            summaries=part("summaries.jsonl", lambda: list(self._read_strict(doc_id, "summaries", Summary))),
            qa_pairs=part("qa_pairs.jsonl", lambda: list(self._read_strict(doc_id, "qa_pairs", QAPair))),
            validations=part("validation.jsonl", lambda: list(self._read_strict(doc_id, "validation", ValidationResult))),
            samples=part("ft.jsonl", lambda: list(self._read_strict(doc_id, "ft", FineTuneSample))),
            embeddings=part("embeddings.npy", lambda: np.load(folder / "embeddings.npy", allow_pickle=False)),
            taxonomy=part("taxonomy.json", lambda: self.read_json(doc_id, "taxonomy")),
        )
        n = len(shard.chunks)
        if n != record.counts.get("chunks", n):
            raise ShardDamaged(doc_id, f"chunks.jsonl has {n} records, record.json says {record.counts['chunks']}")
        if shard.embeddings.ndim != 2 or len(shard.embeddings) != n:
            raise ShardDamaged(doc_id, f"embeddings.npy has shape {shard.embeddings.shape}, expected {n} rows")
        for name, rows in (("metadata", shard.metadata), ("summaries", shard.summaries)):
            if len(rows) != n:
                raise ShardDamaged(doc_id, f"{name}.jsonl has {len(rows)} records for {n} chunks")
        if len(shard.validations) != len(shard.qa_pairs):
            raise ShardDamaged(doc_id, f"validation.jsonl has {len(shard.validations)} records for {len(shard.qa_pairs)} QA pairs")
        return shard

    def quarantine(self, doc_id: str, source: str, reason: str) -> dict[str, Any]:
        """Move a damaged shard to ``<out>/quarantine/`` (kept for inspection); returns the report entry."""
        qdir = self.root.parent / "quarantine"
        qdir.mkdir(parents=True, exist_ok=True)
        target = qdir / f"{doc_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.replace(self.path(doc_id), target)
        (target / "REASON.txt").write_text(f"{source}: {reason}\n", encoding="utf-8")
        fsync_dir(self.root)
        return {"doc_id": doc_id, "source": source, "reason": reason, "moved_to": str(target.relative_to(self.root.parent))}

    def _read_strict(self, doc_id: str, name: str, model: type[R]) -> Iterator[R]:
        return read_jsonl(self.path(doc_id) / f"{name}.jsonl", model)

    def read(self, doc_id: str, name: str, model: type[R]) -> Iterator[R]:
        path = self.path(doc_id) / f"{name}.jsonl"
        return read_jsonl(path, model) if path.is_file() else iter(())

    def read_array(self, doc_id: str, name: str) -> np.ndarray | None:
        path = self.path(doc_id) / f"{name}.npy"
        return np.load(path) if path.is_file() else None

    def read_json(self, doc_id: str, name: str) -> Any:
        path = self.path(doc_id) / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def remove_temporaries(self) -> int:
        """Delete folders left by a killed run; returns how many."""
        if not self.root.is_dir():
            return 0
        leftovers = [p for p in self.root.iterdir() if p.name.startswith(".tmp-")]
        for p in leftovers:
            shutil.rmtree(p, ignore_errors=True)
        return len(leftovers)

    def doc_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir())

    def prune(self, keep: set[str]) -> list[str]:
        """Remove shards of documents no longer in the input (edited or deleted files)."""
        removed = [d for d in self.doc_ids() if d not in keep]
        for doc_id in removed:
            shutil.rmtree(self.path(doc_id), ignore_errors=True)
        return removed



def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
