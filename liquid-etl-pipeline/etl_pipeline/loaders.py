"""Find documents in a folder and load each one into a ``Document``.

Discovery is cheap and never fails on a bad file: it only lists sources and hashes their raw
bytes (a ``.jsonl`` file is read once and yields one source per non-empty line, with the line's
byte offset, so loading a record seeks to it). Loading parses one source and raises
``LoadError`` naming the source and what is wrong, so one bad file costs only itself.

Ids: ``content_hash`` is the sha256 of the raw bytes; ``doc_id`` hashes the source name with it,
so an edited file gets a new id and an unchanged one keeps its id. A ``.jsonl`` record is named
``<file>#<id>`` after its own id field, else ``<file>#sha-<12 hex>`` after its content, never
after its line number: inserting a line re-does only that record.

Symlink policy (each skip or refusal is listed in ``Discovery.skipped`` and in report.json):

* a link whose target lies outside the input folder is *refused* (an error: the run is partial);
* a broken link or a link loop is *refused* likewise;
* a link to a file or folder inside the input folder is *skipped*: its target is read under its
  own name, so following it would only ingest the same text twice;
* hidden names (``.git``, editor files) and non-regular files (FIFOs, devices) are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from etl_pipeline.formats import (
    PdfError,
    html_to_markdown,
    markdown_title,
    pdf_to_text,
    rst_to_markdown,
)
from etl_pipeline.text_decoding import DecodeError, decode_bytes
from liquid_shared.schemas import Document, content_hash

TEXT_SUFFIXES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown", ".rst": "text/x-rst"}
SUPPORTED_SUFFIXES: tuple[str, ...] = (*TEXT_SUFFIXES, ".html", ".htm", ".pdf", ".jsonl")


class LoadError(ValueError):
    """A source could not be turned into a document; the message names the source and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class SourceItem:
    """One document-to-be: a file, or one record of a ``.jsonl`` file."""

    source: str
    """Path relative to the input folder (posix), plus ``#<line>`` for a ``.jsonl`` record."""
    path: Path
    raw_hash: str
    size: int
    record_line: int | None = None
    """Line number of a ``.jsonl`` record (for ordering and messages, not part of its name)."""
    offset: int | None = None
    """Byte offset of a ``.jsonl`` record's line in its file."""

    @property
    def doc_id(self) -> str:
        return content_hash(self.source, self.raw_hash)

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SkippedSource:
    """A name found in the input folder that is not processed, and why."""

    source: str
    reason: str
    refused: bool
    """True when the input is at fault (a link out of the folder, a broken link or a loop): the run is partial."""


@dataclass
class Discovery:
    items: list[SourceItem] = field(default_factory=list)
    skipped: list[SkippedSource] = field(default_factory=list)


def discover_sources(input_dir: Path, *, limit: int | None = None, jsonl_id_field: str = "id") -> list[SourceItem]:
    """All supported sources under ``input_dir``, sorted by source name (the processing order)."""
    items = discover(input_dir, jsonl_id_field=jsonl_id_field).items
    return items[:limit] if limit else items


def discover(input_dir: Path, *, jsonl_id_field: str = "id") -> Discovery:
    """Every supported source under ``input_dir`` and every name skipped (see the symlink policy).

    Raises ``FileNotFoundError``/``NotADirectoryError`` for a missing or non-folder input.
    Unreadable files still appear (their load fails with a clear error).
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise NotADirectoryError(f"input {input_dir} is not a folder")
    root = input_dir.resolve()
    found = Discovery()
    _scan(root, "", found, jsonl_id_field)
    found.items.sort(key=lambda it: (it.source.split("#")[0], it.record_line or 0))
    found.skipped.sort(key=lambda sk: sk.source)
    return found


def _scan(root: Path, rel_dir: str, found: Discovery, jsonl_id_field: str) -> None:
    folder = root / rel_dir if rel_dir else root
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        found.skipped.append(SkippedSource(rel_dir or ".", f"cannot list folder: {exc.strerror or exc}", refused=True))
        return
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        if entry.name.startswith("."):
            continue  # hidden files and folders (editor swap files, .git)
        path = Path(entry.path)
        if entry.is_symlink():
            _symlink(root, rel, path, found)
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = entry.is_file(follow_symlinks=False)
        except OSError:
            is_dir = is_file = False
        if is_dir:
            _scan(root, rel, found, jsonl_id_field)
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        elif not is_file:
            found.skipped.append(SkippedSource(rel, "not a regular file (FIFO, socket or device)", refused=False))
        else:
            _add_file(path, rel, found, jsonl_id_field)


def _symlink(root: Path, rel: str, path: Path, found: Discovery) -> None:
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        found.skipped.append(SkippedSource(rel, "symlink loop (the link resolves to itself)", refused=True))
        return
    except OSError as exc:
        what = "symlink loop" if getattr(exc, "errno", None) == 40 else "broken symlink"
        found.skipped.append(SkippedSource(rel, f"{what} ({os.readlink(path)!r})", refused=True))
        return
    if not target.is_relative_to(root):
        found.skipped.append(SkippedSource(rel, f"symlink to {target}, outside the input folder: refused", refused=True))
        return
    inside = target.relative_to(root).as_posix() or "."
    if (root / rel).parent.resolve().is_relative_to(target):
        found.skipped.append(SkippedSource(rel, f"symlink loop: points at its own ancestor folder {inside!r}", refused=True))
        return
    if target.is_dir() or target.suffix.lower() in SUPPORTED_SUFFIXES:
        found.skipped.append(
            SkippedSource(rel, f"symlink to {inside!r} inside the input folder: skipped, the target is read under its own name", refused=False)
        )


def _add_file(path: Path, rel: str, found: Discovery, jsonl_id_field: str) -> None:
    try:
        size = path.stat().st_size
        if path.suffix.lower() == ".jsonl":
            found.items.extend(_jsonl_sources(path, rel, jsonl_id_field))
            return
        raw_hash = _file_sha256(path)
    except OSError:
        size, raw_hash = 0, "unreadable"
    found.items.append(SourceItem(source=rel, path=path, raw_hash=raw_hash, size=size))


def _record_name(line: bytes, id_field: str, digest: str) -> str:
    """A record's own id (string or integer) if it has one, else its content hash."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        record = None
    value = record.get(id_field) if isinstance(record, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return f"sha-{digest[:12]}"
    return " ".join(str(value).split())[:120]


def _jsonl_sources(path: Path, rel: str, id_field: str) -> list[SourceItem]:
    """One pass over the file: each non-empty line's offset, hash and name."""
    out: list[SourceItem] = []
    names: dict[str, int] = {}
    offset = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            digest = hashlib.sha256(line).hexdigest()
            name = _record_name(line, id_field, digest)
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:  # a repeated id or an identical line: still its own record
                name = f"{name}~{names[name]}"
            out.append(
                SourceItem(
                    source=f"{rel}#{name}", path=path, raw_hash=digest, size=len(line), record_line=lineno, offset=start
                )
            )
    return out


def _read_jsonl_record(item: SourceItem) -> bytes:
    with item.path.open("rb") as fh:
        fh.seek(item.offset or 0)
        line = fh.read(item.size)
    if hashlib.sha256(line).hexdigest() != item.raw_hash:
        raise EOFError(f"the file changed since it was listed (line {item.record_line} is not the same record)")
    return line


def load_document(item: SourceItem, *, max_bytes: int, jsonl_text_field: str = "text") -> Document:
    """Parse one source into a ``Document`` or raise ``LoadError``."""
    if item.size > max_bytes:
        raise LoadError(item.source, f"file is {item.size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        raw = _read_jsonl_record(item) if item.offset is not None else item.path.read_bytes()
    except (OSError, EOFError) as exc:
        raise LoadError(item.source, f"cannot read: {exc}") from None
    if not raw.strip():
        raise LoadError(item.source, "empty document (no bytes or only whitespace)")
    warnings: list[str] = []
    metadata: dict[str, object] = {}
    suffix = item.suffix
    try:
        if suffix == ".pdf":
            text, title, warnings = pdf_to_text(raw)
            mime = "application/pdf"
        elif suffix in (".html", ".htm"):
            decoded = decode_bytes(raw)
            text, title = html_to_markdown(decoded.text)
            mime = "text/html"
            metadata["encoding"] = decoded.encoding
        elif suffix == ".jsonl":
            text, title, metadata = _jsonl_record(raw, jsonl_text_field)
            mime = "application/jsonl"
        else:
            decoded = decode_bytes(raw)
            metadata["encoding"] = decoded.encoding
            if decoded.detected:
                warnings.append(f"not UTF-8; decoded as {decoded.encoding}")
            text = rst_to_markdown(decoded.text) if suffix == ".rst" else decoded.text
            title = markdown_title(text) if suffix != ".txt" else _first_line_title(text)
            mime = TEXT_SUFFIXES[suffix]
    except (DecodeError, PdfError, ValueError) as exc:
        where = f"line {item.record_line}: " if item.record_line else ""
        raise LoadError(item.source, f"{where}{exc}") from None
    if not text.strip():
        raise LoadError(item.source, "no text after extraction")
    if warnings:
        metadata["warnings"] = warnings
    return Document(
        doc_id=item.doc_id,
        source=item.source,
        title=title or Path(item.source.split("#")[0]).stem.replace("_", " ").replace("-", " "),
        text=text,
        content_hash=item.raw_hash,
        mime=mime,
        metadata=metadata,
    )


def _first_line_title(text: str) -> str:
    """A plain-text title: a short first line that does not end like a sentence."""
    first = text.strip().split("\n", 1)[0].strip()
    return first if 0 < len(first) <= 80 and not first.endswith((".", "!", "?", ",", ";", ":")) else ""


def _jsonl_record(raw: bytes, text_field: str) -> tuple[str, str, dict[str, object]]:
    try:
        record = json.loads(decode_bytes(raw).text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a valid JSON record: {exc.msg} at column {exc.colno}") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSONL record must be an object, got {type(record).__name__}")
    text = record.get(text_field)
    if not isinstance(text, str):
        raise ValueError(f"record has no string field {text_field!r} (fields: {sorted(record)[:10]})")
    title = record.get("title") if isinstance(record.get("title"), str) else ""
    extra = {k: v for k, v in record.items() if k not in (text_field, "title") and isinstance(v, str | int | float | bool)}
    return text, str(title), extra
