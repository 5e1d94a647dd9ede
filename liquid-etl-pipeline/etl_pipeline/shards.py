"""Per-document shards: the unit of exactly-once resume.

A document's records are written into ``<out>/docs/.tmp-<doc_id>-<pid>/`` (every file fsynced,
``record.json`` last) and the folder is then renamed to ``<out>/docs/<doc_id>/`` in one
``rename``. A document is *done* exactly when its shard folder exists under its final name, so
a run killed at any instant leaves each document either fully done or not done at all; leftover
temporary folders are deleted at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from liquid_shared.schemas import read_jsonl

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
    title: str = ""
    mime: str = ""
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{record.doc_id}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
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
        final = self.path(record.doc_id)
        if final.exists():
            old = self.root / f".old-{record.doc_id}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        return final

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
        leftovers = [p for p in self.root.iterdir() if p.name.startswith((".tmp-", ".old-"))]
        for p in leftovers:
            shutil.rmtree(p, ignore_errors=True)
        return len(leftovers)

    def doc_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / "record.json").is_file())

    def prune(self, keep: set[str]) -> list[str]:
        """Remove shards of documents no longer in the input (edited or deleted files)."""
        removed = [d for d in self.doc_ids() if d not in keep]
        for doc_id in removed:
            shutil.rmtree(self.path(doc_id), ignore_errors=True)
        return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
