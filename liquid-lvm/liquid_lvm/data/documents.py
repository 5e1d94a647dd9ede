"""Ordered documents (chunks in reading order) from the three sources the LVM reads.

* a JSONL file, one document a line: ``id`` (or ``doc_id``), ``title``, and the ordered chunks
  as ``paragraphs`` (strings or ``{"text": ...}``), ``chunks`` or ``texts`` (the shared
  Wikipedia articles have this form);
* an ETL run folder (``chunks.jsonl``): chunks grouped by ``doc_id``, ordered by ``position``;
* a SQuAD JSON file (``data[].title``, ``data[].paragraphs[].context``): paragraphs in order.

A line that is not a document is skipped and counted (``LoadReport.skipped``), never fatal; a
source without any document is an error naming it.

``exclude_sections`` drops the paragraphs of the named sections (JSONL paragraphs given as
``{"section", "text"}``; a section path ``"A > B"`` matches when any part is named, case-insensitive)
and counts them (``LoadReport.excluded_chunks``). The shared Wikipedia file needs it: 12,190 of its
16,680 paragraphs are ``References`` entries (mostly one URL each), so without it the next-chunk
task is mostly "predict the next citation". ``REFERENCE_SECTIONS`` names the usual back-matter.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REFERENCE_SECTIONS = ("References", "External links", "See also", "Notes", "Further reading", "Bibliography",
                      "Sources", "Citations", "Notes and references", "Footnotes")


@dataclass(frozen=True)
class OrderedDocument:
    doc_id: str
    title: str
    chunks: tuple[str, ...]


@dataclass
class LoadReport:
    source: str
    kind: str
    documents: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # line/doc -> why
    excluded_chunks: int = 0  # paragraphs dropped by ``exclude_sections``


def _chunk_text(item) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return item["text"]
    return None


def _excluded(item, exclude: frozenset[str]) -> bool:
    if not exclude or not isinstance(item, dict) or not isinstance(item.get("section"), str):
        return False
    return any(part.strip().casefold() in exclude for part in item["section"].split(">"))


def _from_record(record: dict, where: str, exclude: frozenset[str] = frozenset(),
                 report: LoadReport | None = None) -> OrderedDocument:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object")
    doc_id = record.get("id", record.get("doc_id"))
    if doc_id is None:
        raise ValueError(f"{where}: no 'id' or 'doc_id'")
    items = next((record[k] for k in ("paragraphs", "chunks", "texts") if k in record), None)
    if not isinstance(items, list):
        raise ValueError(f"{where}: no list of 'paragraphs', 'chunks' or 'texts'")
    kept = [x for x in items if not _excluded(x, exclude)]
    if report is not None:
        report.excluded_chunks += len(items) - len(kept)
    texts = [_chunk_text(x) for x in kept]
    if any(t is None for t in texts):
        raise ValueError(f"{where}: a chunk is neither a string nor an object with 'text'")
    texts = [t.strip() for t in texts if t.strip()]
    return OrderedDocument(str(doc_id), str(record.get("title", "")), tuple(texts))


def _load_jsonl(path: Path, report: LoadReport, exclude: frozenset[str] = frozenset()) -> list[OrderedDocument]:
    docs = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                docs.append(_from_record(json.loads(line), f"{path}:{n}", exclude, report))
            except (ValueError, json.JSONDecodeError) as exc:
                report.skipped[f"line {n}"] = str(exc)
    return docs


def _load_etl_run(folder: Path, report: LoadReport) -> list[OrderedDocument]:
    by_doc: dict[str, list[tuple[int, str]]] = defaultdict(list)
    titles: dict[str, str] = {}
    with (folder / "chunks.jsonl").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                chunk = json.loads(line)
                by_doc[str(chunk["doc_id"])].append((int(chunk["position"]), str(chunk["text"])))
                titles.setdefault(str(chunk["doc_id"]), str((chunk.get("metadata") or {}).get("title", "")))
            except (ValueError, KeyError, TypeError) as exc:
                report.skipped[f"chunks.jsonl line {n}"] = f"{type(exc).__name__}: {exc}"
    return [OrderedDocument(d, titles[d], tuple(t for _, t in sorted(items))) for d, items in by_doc.items()]


def _load_squad(path: Path, report: LoadReport) -> list[OrderedDocument]:
    data = json.loads(path.read_text(encoding="utf-8"))
    docs = []
    for i, article in enumerate(data.get("data", [])):
        try:
            texts = tuple(p["context"].strip() for p in article["paragraphs"])
            docs.append(OrderedDocument(f"squad/{article['title']}", str(article["title"]), texts))
        except (KeyError, TypeError, AttributeError) as exc:
            report.skipped[f"data[{i}]"] = f"not a SQuAD article ({type(exc).__name__}: {exc})"
    return docs


def load_documents(source: str | Path, exclude_sections: Iterable[str] = ()) -> tuple[list[OrderedDocument], LoadReport]:
    """Documents of ``source`` (JSONL file, ETL run folder or SQuAD JSON) and what was skipped;
    paragraphs of ``exclude_sections`` (JSONL with sections only) are dropped and counted."""
    path = Path(source).expanduser()
    exclude = frozenset(s.strip().casefold() for s in exclude_sections if s.strip())
    if path.is_dir():
        if not (path / "chunks.jsonl").is_file():
            raise FileNotFoundError(f"{path} is a folder but not an ETL run folder (no chunks.jsonl)")
        report = LoadReport(str(path), "etl_run")
        docs = _load_etl_run(path, report)
    elif not path.is_file():
        raise FileNotFoundError(f"document source {path} does not exist")
    elif path.suffix == ".json":
        report = LoadReport(str(path), "squad")
        docs = _load_squad(path, report)
    else:
        report = LoadReport(str(path), "jsonl")
        docs = _load_jsonl(path, report, exclude)
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ValueError(f"{path}: document ids repeat (e.g. {dup}); splits by document need unique ids")
    if exclude and report.kind != "jsonl":
        raise ValueError(f"{path}: exclude_sections needs a JSONL source whose paragraphs carry a 'section' "
                         f"(this is a {report.kind} source)")
    if not docs:
        why = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:3])
        raise ValueError(f"{path} has no documents" + (f" (skipped: {why})" if why else ""))
    report.documents = len(docs)
    return docs, report
