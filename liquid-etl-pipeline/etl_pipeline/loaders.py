"""Find documents in a folder and load each one into a ``Document``.

Discovery is cheap and never fails on a bad file: it only lists sources and hashes their raw
bytes (a ``.jsonl`` file yields one source per non-empty line). Loading parses one source and
raises ``LoadError`` naming the source and what is wrong, so one bad file costs only itself.

Ids: ``content_hash`` is the sha256 of the raw bytes; ``doc_id`` hashes the source path (relative
to the input folder) with it, so an edited file gets a new id and an unchanged one keeps its id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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


def discover_sources(input_dir: Path, *, limit: int | None = None) -> list[SourceItem]:
    """All supported sources under ``input_dir``, sorted by source name (the processing order).

    Raises ``FileNotFoundError``/``NotADirectoryError`` for a missing or non-folder input.
    Unreadable files still appear (their load fails with a clear error).
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise NotADirectoryError(f"input {input_dir} is not a folder")
    items: list[SourceItem] = []
    for path in sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES):
        rel = path.relative_to(input_dir).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # hidden files and folders (editor swap files, .git)
        try:
            size = path.stat().st_size
            if path.suffix.lower() == ".jsonl":
                items.extend(_jsonl_sources(path, rel))
                continue
            raw_hash = _file_sha256(path)
        except OSError:
            size, raw_hash = 0, "unreadable"
        items.append(SourceItem(source=rel, path=path, raw_hash=raw_hash, size=size))
    items.sort(key=lambda it: (it.source.split("#")[0], it.record_line or 0))
    return items[:limit] if limit else items


def _jsonl_sources(path: Path, rel: str) -> list[SourceItem]:
    out: list[SourceItem] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                out.append(
                    SourceItem(
                        source=f"{rel}#{lineno}",
                        path=path,
                        raw_hash=hashlib.sha256(line).hexdigest(),
                        size=len(line),
                        record_line=lineno,
                    )
                )
    return out


def _read_jsonl_line(path: Path, lineno: int) -> bytes:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if n == lineno:
                return line
    raise EOFError(f"line {lineno} no longer exists")


def load_document(item: SourceItem, *, max_bytes: int, jsonl_text_field: str = "text") -> Document:
    """Parse one source into a ``Document`` or raise ``LoadError``."""
    if item.size > max_bytes:
        raise LoadError(item.source, f"file is {item.size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        raw = _read_jsonl_line(item.path, item.record_line) if item.record_line else item.path.read_bytes()
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
        raise LoadError(item.source, str(exc)) from None
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
