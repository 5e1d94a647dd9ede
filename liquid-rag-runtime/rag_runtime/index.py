"""The on-disk index of rag_runtime: documents, a BM25 index and a FAISS index in one folder.

Layout (format ``liquid-rag-index``, version 1)::

    <index>/manifest.json          format, version, counts, source, parameters (IndexManifest)
    <index>/docs.jsonl             IndexedDoc per line; line i = row i in both indexes
    <index>/bm25/                  bm25s arrays (data/indices/indptr .npy, vocab, params) + bm25_config.json
    <index>/dense/index.faiss      FAISS index (faiss.write_index)
    <index>/dense/ids.json         the id map: document id of FAISS row i
    <index>/dense/dense_config.json

Loading reads only these files, and refuses any of them that resolves (through a symlink) to a
place outside the index folder. Arrays are loaded with ``allow_pickle=False``. The embedding model
named in ``dense_config.json`` is loaded only when it is on the allow-list (default: the offline
all-MiniLM-L6-v2) or is a model folder inside the index folder (``confine_embedding_model``), so a
crafted index cannot make the service read a model from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL
from rag_runtime.bm25 import CONFIG_FILE as BM25_CONFIG
from rag_runtime.bm25 import Bm25Params, Bm25Retriever
from rag_runtime.dense import CONFIG_FILE as DENSE_CONFIG
from rag_runtime.dense import IDS_FILE, INDEX_FILE, DenseParams, DenseRetriever
from rag_runtime.documents import DOCS_FILE, DocStore, IndexedDoc, load_documents
from rag_runtime.hybrid import FusionMethod, HybridRetriever
from rag_runtime.retriever import Retriever

INDEX_FORMAT = "liquid-rag-index"
INDEX_VERSION = 1
MANIFEST_FILE = "manifest.json"
BM25_DIR = "bm25"
DENSE_DIR = "dense"
BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json",
               "params.index.json", BM25_CONFIG)
DENSE_FILES = (INDEX_FILE, IDS_FILE, DENSE_CONFIG)

SearchMode = Literal["hybrid", "bm25", "dense"]
DEFAULT_ALLOWED_EMBEDDING_MODELS = (DEFAULT_EMBEDDING_MODEL,)


class IndexFormatError(ValueError):
    """An index folder is missing, incomplete, of another format, or points outside itself."""


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["liquid-rag-index"] = INDEX_FORMAT
    version: int = INDEX_VERSION
    created_at: str
    n_docs: int
    source: str | None = None
    source_kind: str | None = None
    bm25: Bm25Params
    dense: DenseParams | None = None


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, resolved, checked to exist and to stay inside ``root``."""
    path = root / relative
    if not path.exists():
        raise IndexFormatError(f"{root}: missing {relative}; not a complete rag_runtime index "
                               "(build one with `python -m rag_runtime build-index`)")
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise IndexFormatError(f"{path}: resolves to {real}, outside the index folder {root.resolve()}; refusing to read it")
    return real


def confine_embedding_model(name: str, folder: Path, allowed: Collection[str] = DEFAULT_ALLOWED_EMBEDDING_MODELS) -> str:
    """What to load the query encoder from, for an index whose dense config names ``name``.

    ``name`` itself when it is in ``allowed`` (hub ids or paths the operator listed at start-up);
    else, when ``name`` is a relative path to a folder inside ``folder``, that folder's resolved
    path; anything else (an absolute path, ``..``, a symlink out, a hub id not listed) is refused.
    """
    if name in allowed:
        return name
    candidate = Path(name)
    if not candidate.is_absolute() and not name.startswith("~"):
        real = (folder / candidate).resolve()
        if real.is_relative_to(folder.resolve()) and real.is_dir():
            return str(real)
    raise IndexFormatError(
        f"{folder / DENSE_DIR / DENSE_CONFIG}: embedding model {name!r} is neither a model folder inside the "
        f"index folder nor on the allow-list ({', '.join(sorted(allowed)) or 'empty'}); refusing to load it. "
        f"If you trust it, allow it at start-up (serve --allow-embedding-model {name!r})"
    )


class RagIndex:
    """Documents plus their BM25 and (optionally) dense indexes; hands out retrievers."""

    def __init__(self, store: DocStore, bm25: Bm25Retriever, dense: DenseRetriever | None, manifest: IndexManifest):
        self.store, self.bm25, self.dense, self.manifest = store, bm25, dense, manifest

    @classmethod
    def build(
        cls,
        docs: Sequence[IndexedDoc],
        *,
        bm25_params: Bm25Params | None = None,
        dense_params: DenseParams | None = None,
        with_dense: bool = True,
        embedder=None,
        source: str | None = None,
        source_kind: str | None = None,
        progress=None,
    ) -> RagIndex:
        """Index ``docs``; ``progress`` is an optional ``rich.progress.Progress`` to report on."""
        if not docs:
            raise ValueError("cannot build an index from zero documents")
        store = DocStore(docs)
        task = progress.add_task("BM25 index", total=1) if progress else None
        bm25 = Bm25Retriever.build(store, bm25_params)
        if progress:
            progress.update(task, advance=1)
        dense = None
        if with_dense:
            task = progress.add_task("Embed documents", total=len(store)) if progress else None
            dense = DenseRetriever.build(
                store, dense_params, embedder=embedder,
                on_progress=(lambda n: progress.update(task, advance=n)) if progress else None,
            )
        manifest = IndexManifest(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), n_docs=len(store), source=source,
            source_kind=source_kind, bm25=bm25.params, dense=dense.params if dense else None,
        )
        return cls(store, bm25, dense, manifest)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.store.save(folder)
        self.bm25.save(folder / BM25_DIR)
        if self.dense is not None:
            self.dense.save(folder / DENSE_DIR)
        (folder / MANIFEST_FILE).write_text(self.manifest.model_dump_json(indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, with_dense: bool = True, encoder=None,
             allowed_embedding_models: Collection[str] = DEFAULT_ALLOWED_EMBEDDING_MODELS) -> RagIndex:
        """Load an index folder (only files inside it). ``with_dense=False`` skips FAISS and the encoder.

        ``allowed_embedding_models``: the embedding models (hub ids or paths) the index may name
        besides model folders inside itself (``confine_embedding_model``).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise IndexFormatError(f"{folder}: no such index folder")
        manifest_path = _inside(folder, MANIFEST_FILE)
        try:
            manifest = IndexManifest.model_validate(json.loads(manifest_path.read_text()))
        except (ValueError, ValidationError) as exc:
            raise IndexFormatError(f"{manifest_path}: not a {INDEX_FORMAT} manifest: {exc}") from exc
        if manifest.version != INDEX_VERSION:
            raise IndexFormatError(f"{manifest_path}: index format version {manifest.version}, this code reads {INDEX_VERSION}")
        try:
            store = DocStore.load(_inside(folder, DOCS_FILE))
        except ValueError as exc:
            raise IndexFormatError(str(exc)) from exc
        for name in BM25S_FILES:
            _inside(folder, f"{BM25_DIR}/{name}")
        bm25 = Bm25Retriever.load(_inside(folder, BM25_DIR), store)
        dense = None
        if with_dense and manifest.dense is not None:
            for name in DENSE_FILES:
                _inside(folder, f"{DENSE_DIR}/{name}")
            dense_dir = _inside(folder, DENSE_DIR)
            try:
                params = DenseRetriever.load_params(dense_dir)
            except (ValueError, ValidationError) as exc:
                raise IndexFormatError(f"{dense_dir / DENSE_CONFIG}: invalid dense config: {exc}") from exc
            encoder_model = confine_embedding_model(params.embedding_model, folder, allowed_embedding_models)
            dense = DenseRetriever.load(dense_dir, store, encoder, encoder_model)
        return cls(store, bm25, dense, manifest)

    @property
    def modes(self) -> list[str]:
        return ["hybrid", "bm25", "dense"] if self.dense is not None else ["bm25"]

    def retriever(
        self,
        mode: SearchMode = "hybrid",
        *,
        fusion: FusionMethod = "rrf",
        dense_weight: float = 0.5,
        candidates: int = 100,
    ) -> Retriever:
        if mode == "bm25":
            return self.bm25
        if self.dense is None:
            raise ValueError(f"mode {mode!r} needs the dense index; this index has only BM25 (built with --no-dense)")
        if mode == "dense":
            return self.dense
        if mode == "hybrid":
            return HybridRetriever(self.bm25, self.dense, fusion=fusion, dense_weight=dense_weight, candidates=candidates)
        raise ValueError(f"unknown search mode {mode!r}; choose hybrid, bm25 or dense")


def build_index(
    source: str | Path,
    out: str | Path,
    *,
    bm25_params: Bm25Params | None = None,
    dense_params: DenseParams | None = None,
    with_dense: bool = True,
    progress=None,
) -> RagIndex:
    """Index an ETL run folder (``chunks.jsonl``) or a BEIR folder (``corpus.jsonl``) into ``out``."""
    source = Path(source)
    kind, docs = load_documents(source)
    index = RagIndex.build(
        docs, bm25_params=bm25_params, dense_params=dense_params, with_dense=with_dense,
        source=str(source), source_kind=kind, progress=progress,
    )
    index.save(out)
    return index
