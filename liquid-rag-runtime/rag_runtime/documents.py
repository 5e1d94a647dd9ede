"""The documents an index serves, and the loaders that read them from an ETL run or a BEIR folder.

Every loader yields ``IndexedDoc`` records whose ``metadata`` carries the four filterable fields
under fixed names: ``source`` (str), ``tags`` (list), ``categories`` (list), ``tmd`` (str or None).
The row of a document in the ``DocStore`` is its position in every index (FAISS id, bm25s doc id).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag_runtime.filters import FilterIndex
from rag_runtime.hits import Hit

DOCS_FILE = "docs.jsonl"
SourceKind = Literal["etl", "beir"]


class SourceFormatError(ValueError):
    """The folder given to build an index from is neither an ETL run nor a BEIR folder."""


class IndexedDoc(BaseModel):
    """One retrievable unit: an ETL chunk or a BEIR document."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    search_title: bool = Field(
        True, description="Whether the title is part of what is searched and embedded (BEIR documents: yes; "
        "ETL chunks: no, their title is the document's, repeated on every chunk).",
    )

    @property
    def search_text(self) -> str:
        """What BM25 tokenises and the encoder embeds: title and text (BEIR's convention), or the text alone."""
        return f"{self.title} {self.text}".strip() if self.title and self.search_title else self.text


class DocStore:
    """Documents in index order, with an id -> row map and a metadata filter index."""

    def __init__(self, docs: Sequence[IndexedDoc]):
        self.docs = list(docs)
        self.row_of: dict[str, int] = {}
        for row, doc in enumerate(self.docs):
            if doc.id in self.row_of:
                raise ValueError(f"duplicate document id {doc.id!r} (rows {self.row_of[doc.id]} and {row})")
            self.row_of[doc.id] = row
        self.ids = [d.id for d in self.docs]
        self.filters = FilterIndex([d.metadata for d in self.docs])

    def __len__(self) -> int:
        return len(self.docs)

    def hit(self, row: int, score: float, scores: dict[str, float] | None = None) -> Hit:
        doc = self.docs[row]
        # model_construct: the values come from validated documents; hits are made by the thousand
        return Hit.model_construct(
            id=doc.id, score=float(score), text=doc.text, title=doc.title, metadata=doc.metadata,
            scores=scores or {},
        )

    def save(self, folder: Path) -> Path:
        from liquid_shared.schemas import write_jsonl

        path = folder / DOCS_FILE
        write_jsonl(path, self.docs)
        return path

    @classmethod
    def load(cls, path: Path) -> DocStore:
        from liquid_shared.schemas import read_jsonl

        return cls(list(read_jsonl(path, IndexedDoc)))


def _merge_lists(*values: Any) -> list[str]:
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        for item in [value] if isinstance(value, str) else value:
            if item is not None and str(item) and str(item) not in out:
                out.append(str(item))
    return out


def etl_documents(chunks: Sequence[Any], metadata: Sequence[Any] = ()) -> list[IndexedDoc]:
    """``IndexedDoc`` records of ETL chunks (``liquid_shared.schemas.Chunk``), their ``ChunkMetadata`` merged in.

    The one mapping from an ETL run to index documents: ``load_etl_run`` (build-index) and the
    ETL's own index writer both use it, so both producers index the same documents.
    """
    extra = {m.chunk_id: m for m in metadata}
    docs = []
    for chunk in chunks:
        cm = extra.get(chunk.chunk_id)
        meta = dict(chunk.metadata)
        meta.update(doc_id=chunk.doc_id, position=chunk.position, section_path=chunk.section_path)
        meta["source"] = str(meta["source"]) if meta.get("source") is not None else None
        meta["tags"] = _merge_lists(meta.get("tags"), cm.tags if cm else None)
        meta["categories"] = _merge_lists(meta.get("categories"), meta.get("category"), cm.category if cm else None)
        meta["tmd"] = meta.get("tmd") or (cm.tmd if cm else None)
        if cm is not None:
            meta.update(keywords=cm.keywords, entities=cm.entities, importance=cm.importance.value)
        title = str(meta.pop("title", "") or "")
        # the chunk text alone is embedded: what the ETL embeds, and better than title + text on
        # SQuAD paragraphs under their article's title (docs/results.md, "Which text to embed")
        docs.append(IndexedDoc(id=chunk.chunk_id, text=chunk.text, title=title, metadata=meta, search_title=False))
    return docs


def load_etl_run(folder: str | Path) -> list[IndexedDoc]:
    """Chunks of an ETL run folder (``chunks.jsonl``), with ``metadata.jsonl`` merged in if present."""
    from liquid_shared.schemas import Chunk, ChunkMetadata, read_jsonl

    folder = Path(folder)
    chunks_path = folder / "chunks.jsonl"
    if not chunks_path.is_file():
        raise SourceFormatError(f"{folder}: not an ETL run folder (no chunks.jsonl)")
    metadata = list(read_jsonl(folder / "metadata.jsonl", ChunkMetadata)) if (folder / "metadata.jsonl").is_file() else []
    docs = etl_documents(list(read_jsonl(chunks_path, Chunk)), metadata)
    if not docs:
        raise SourceFormatError(f"{chunks_path}: no chunks to index")
    return docs


def load_beir_corpus(folder: str | Path) -> list[IndexedDoc]:
    """The corpus of a BEIR folder (``corpus.jsonl``; queries and qrels are not needed to index).

    Each document's ``source`` is ``beir/<folder name>``. Malformed lines raise
    ``liquid_shared.data.beir.BeirFormatError`` naming the file and line.
    """
    from liquid_shared.data import read_corpus

    folder = Path(folder)
    source = f"beir/{folder.resolve().name}"
    docs = [
        IndexedDoc(id=doc_id, text=doc.text, title=doc.title or "",
                   metadata={"source": source, "tags": [], "categories": [], "tmd": None})
        for doc_id, doc in read_corpus(folder / "corpus.jsonl").items()
    ]
    if not docs:
        raise SourceFormatError(f"{folder / 'corpus.jsonl'}: no documents to index")
    return docs


def detect_source_kind(folder: str | Path) -> SourceKind:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceFormatError(f"{folder}: no such folder (expected an ETL run folder or a BEIR folder)")
    if (folder / "chunks.jsonl").is_file():
        return "etl"
    if (folder / "corpus.jsonl").is_file():
        return "beir"
    raise SourceFormatError(
        f"{folder}: neither an ETL run folder (chunks.jsonl) nor a BEIR folder (corpus.jsonl)"
    )


def load_documents(folder: str | Path) -> tuple[SourceKind, list[IndexedDoc]]:
    """Documents of an ETL run folder or a BEIR folder, whichever ``folder`` is."""
    kind = detect_source_kind(folder)
    return kind, (load_etl_run(folder) if kind == "etl" else load_beir_corpus(folder))
