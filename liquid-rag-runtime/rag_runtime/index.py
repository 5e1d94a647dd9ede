"""The on-disk index of rag_runtime: documents, a BM25 index and a FAISS index in one folder.

Layout (format ``liquid-rag-index``, version 2; see ``index_versions`` for how saves switch)::

    <index>/manifest.json                format, version, counts, source, parameters, ``data`` (IndexManifest)
    <index>/<data>/docs.jsonl            IndexedDoc per line; line i = row i in both indexes
    <index>/<data>/bm25/                 bm25s arrays (data/indices/indptr .npy, vocab, params) + bm25_config.json
    <index>/<data>/dense/index.faiss     FAISS index (faiss.write_index)
    <index>/<data>/dense/ids.json        the id map: document id of FAISS row i
    <index>/<data>/dense/dense_config.json

``<data>`` is the current version folder (``v000002-1a2b3c4d``); version 1 indexes kept these
files directly in the index folder and still load. An ETL run folder holds its index in
``<run>/index/``: ``RagIndex.load`` accepts the run folder too (``locate_index``).

Updates (``add``, ``delete``, ``refresh``) re-embed only documents whose embedded text is new
(matched by a sha256 of ``search_text``): the others keep their stored vectors. BM25 is rebuilt
from the documents' texts, so an updated index equals a full rebuild over the same documents in
the same order (same rows, same BM25 scores; with ``flat`` FAISS the same dense scores, given the
same vectors).

Loading reads only these files, and refuses any of them that resolves (through a symlink) to a
place outside the index folder. Arrays are loaded with ``allow_pickle=False``. The embedding model
named in ``dense_config.json`` is loaded only when it is on the allow-list (default: the offline
all-MiniLM-L6-v2) or is a model folder inside the index folder (``confine_embedding_model``), so a
crafted index cannot make the service read a model from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from liquid_shared.atomic import write_json_atomic
from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL
from rag_runtime import index_versions
from rag_runtime.bm25 import CONFIG_FILE as BM25_CONFIG
from rag_runtime.bm25 import Bm25Params, Bm25Retriever
from rag_runtime.dense import CONFIG_FILE as DENSE_CONFIG
from rag_runtime.dense import (
    IDS_FILE,
    INDEX_FILE,
    DenseParams,
    DenseRetriever,
    corpus_encoder,
    stored_vectors,
)
from rag_runtime.documents import DOCS_FILE, DocStore, IndexedDoc, load_documents
from rag_runtime.hybrid import FusionMethod, HybridRetriever
from rag_runtime.retriever import Retriever

INDEX_FORMAT = "liquid-rag-index"
INDEX_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"
RUN_INDEX_DIR = "index"
BM25_DIR = "bm25"
DENSE_DIR = "dense"
BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json",
               "params.index.json", BM25_CONFIG)
DENSE_FILES = (INDEX_FILE, IDS_FILE, DENSE_CONFIG)
OLD_ETL_INDEX_FILES = ("chunks.faiss", "id_map.json")

SearchMode = Literal["hybrid", "bm25", "dense"]
DEFAULT_ALLOWED_EMBEDDING_MODELS = (DEFAULT_EMBEDDING_MODEL,)


class IndexFormatError(ValueError):
    """An index folder is missing, incomplete, of another format, or points outside itself."""


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["liquid-rag-index"] = INDEX_FORMAT
    version: int = INDEX_VERSION
    created_at: str
    updated_at: str | None = None
    generation: int = 0
    data: str | None = None  # the version folder holding the files; None: version 1, files at the top
    n_docs: int
    source: str | None = None
    source_kind: str | None = None
    bm25: Bm25Params
    dense: DenseParams | None = None


@dataclass(frozen=True)
class UpdateReport:
    """What an update did: document counts by id, and how many texts went to the encoder."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    embedded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed,
                "unchanged": self.unchanged, "embedded": self.embedded}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def content_hash(doc: IndexedDoc) -> str:
    """sha256 of what the encoder embeds for ``doc``: equal hashes, reusable vector."""
    return hashlib.sha256(doc.search_text.encode("utf-8")).hexdigest()


def _is_rag_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def locate_index(path: str | Path) -> Path:
    """The index folder of ``path``: ``path`` itself, or ``path/index`` for an ETL run folder.

    An ETL run folder from before the ETL wrote rag_runtime indexes (``index/chunks.faiss``) gets
    an error that says how to make one.
    """
    path = Path(path)
    if not path.is_dir():
        raise IndexFormatError(f"{path}: no such index folder")
    if _is_rag_manifest(path / MANIFEST_FILE):
        return path
    sub = path / RUN_INDEX_DIR
    if (sub / MANIFEST_FILE).is_file():
        return sub
    if any((sub / name).exists() for name in OLD_ETL_INDEX_FILES):
        raise IndexFormatError(
            f"{path}: an ETL run folder from an older version: its index/ holds only the FAISS files "
            f"(chunks.faiss, id_map.json), which rag_runtime cannot serve. Re-run the ETL on it (same --input, "
            f"-o {path}: unchanged documents are not processed again, and index/ is rewritten), or build an index "
            f"from it: `liquid rag build-index {path} -o INDEX`"
        )
    if (path / "chunks.jsonl").is_file():
        raise IndexFormatError(
            f"{path}: an ETL run folder without an index (no index/manifest.json); re-run the ETL on it, "
            f"or `liquid rag build-index {path} -o INDEX`"
        )
    return path


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, resolved, checked to exist and to stay inside ``root``."""
    path = root / relative
    if not path.exists():
        raise IndexFormatError(f"{root}: missing {relative}; not a complete rag_runtime index "
                               "(build one with `liquid rag build-index`)")
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise IndexFormatError(f"{path}: resolves to {real}, outside the index folder {root.resolve()}; refusing to read it")
    return real


def read_manifest(folder: Path) -> IndexManifest:
    manifest_path = _inside(folder, MANIFEST_FILE)
    try:
        manifest = IndexManifest.model_validate(json.loads(manifest_path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise IndexFormatError(f"{manifest_path}: not a {INDEX_FORMAT} manifest: {exc}") from exc
    if manifest.version not in READABLE_VERSIONS:
        raise IndexFormatError(f"{manifest_path}: index format version {manifest.version}, this code reads "
                               f"{', '.join(map(str, READABLE_VERSIONS))}")
    if manifest.data is not None and not index_versions.is_version_name(manifest.data):
        raise IndexFormatError(f"{manifest_path}: data {manifest.data!r} is not a version folder name")
    return manifest


def data_folder(folder: str | Path) -> Path:
    """The folder holding the current version's files (docs.jsonl, bm25/, dense/) of an index or run folder."""
    folder = locate_index(folder)
    manifest = read_manifest(folder)
    return folder / manifest.data if manifest.data else folder


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
        self.last_update: UpdateReport | None = None  # set by build_index when it updated an index in place

    @classmethod
    def build(
        cls,
        docs: Sequence[IndexedDoc],
        *,
        bm25_params: Bm25Params | None = None,
        dense_params: DenseParams | None = None,
        with_dense: bool = True,
        embedder=None,
        vectors: np.ndarray | None = None,
        source: str | None = None,
        source_kind: str | None = None,
        progress=None,
    ) -> RagIndex:
        """Index ``docs``; ``progress`` is an optional ``rich.progress.Progress`` to report on.

        ``vectors``: precomputed document vectors (row i = ``docs[i]``, of ``dense_params``'s
        embedding model), indexed as they are instead of encoding the documents.
        """
        if not docs:
            raise ValueError("cannot build an index from zero documents")
        store = DocStore(docs)
        task = progress.add_task("BM25 index", total=1) if progress else None
        bm25 = Bm25Retriever.build(store, bm25_params)
        if progress:
            progress.update(task, advance=1)
        dense = None
        if vectors is not None:
            dense = DenseRetriever.from_vectors(store, vectors, dense_params)
        elif with_dense:
            task = progress.add_task("Embed documents", total=len(store)) if progress else None
            dense = DenseRetriever.build(
                store, dense_params, embedder=embedder,
                on_progress=(lambda n: progress.update(task, advance=n)) if progress else None,
            )
        manifest = IndexManifest(
            created_at=_now(), n_docs=len(store), source=source,
            source_kind=source_kind, bm25=bm25.params, dense=dense.params if dense else None,
        )
        return cls(store, bm25, dense, manifest)

    # -- updates -------------------------------------------------------------------------------

    def refresh(self, docs: Sequence[IndexedDoc], *, embedder=None, vectors: np.ndarray | None = None) -> UpdateReport:
        """Make the index hold exactly ``docs`` (in this order), re-embedding only new texts.

        A document whose ``search_text`` hash matches a stored document's keeps that vector (no
        encoder call); the others are encoded with ``embedder`` (default: the shared, cached
        corpus encoder of the index's model), or taken from ``vectors`` when given (row i =
        ``docs[i]``; nothing is encoded then). BM25 is rebuilt from the texts. The result equals
        ``RagIndex.build(docs)`` given the same vectors. Call ``save`` to write it as a new version.
        """
        docs = list(docs)
        if not docs:
            raise ValueError("cannot refresh an index to zero documents")
        old = {d.id: d for d in self.store.docs}
        new_ids = {d.id for d in docs}
        added = sum(1 for d in docs if d.id not in old)
        changed = sum(1 for d in docs if d.id in old and old[d.id] != d)
        store = DocStore(docs)
        bm25 = Bm25Retriever.build(store, self.bm25.params)
        dense, embedded = None, 0
        if self.dense is not None:
            if vectors is None:
                vectors, embedded = self._vectors_for(docs, embedder)
            dense = DenseRetriever.from_vectors(store, vectors, self.dense.params, encoder=self.dense._encoder)
            dense.encoder_model = self.dense.encoder_model
        self.store, self.bm25, self.dense = store, bm25, dense
        self.manifest = self.manifest.model_copy(update={
            "n_docs": len(store), "bm25": bm25.params, "dense": dense.params if dense else None, "updated_at": _now(),
        })
        return UpdateReport(added=added, removed=sum(1 for i in old if i not in new_ids), changed=changed,
                            unchanged=len(docs) - added - changed, embedded=embedded)

    def add(self, docs: Sequence[IndexedDoc], *, embedder=None) -> UpdateReport:
        """Append ``docs`` (ids not in the index yet); only their texts are encoded."""
        docs = list(docs)
        taken = [d.id for d in docs if d.id in self.store.row_of]
        if taken:
            raise ValueError(f"cannot add documents already in the index: {', '.join(map(repr, taken[:5]))}"
                             + (f" and {len(taken) - 5} more" if len(taken) > 5 else "") + "; use refresh to replace them")
        return self.refresh(self.store.docs + docs, embedder=embedder)

    def delete(self, doc_ids: Collection[str]) -> UpdateReport:
        """Remove the documents with these ids (each must be in the index); nothing is encoded."""
        doc_ids = set(doc_ids)
        unknown = sorted(doc_ids - set(self.store.row_of))
        if unknown:
            raise KeyError(f"cannot delete documents not in the index: {', '.join(map(repr, unknown[:5]))}")
        return self.refresh([d for d in self.store.docs if d.id not in doc_ids])

    def _vectors_for(self, docs: list[IndexedDoc], embedder) -> tuple[np.ndarray, int]:
        """Vectors of ``docs``: stored ones by content hash, the rest encoded; and how many were encoded."""
        assert self.dense is not None
        stored_rows = {content_hash(d): row for row, d in enumerate(self.store.docs)}
        hashes = [content_hash(d) for d in docs]
        missing = list(dict.fromkeys(h for h in hashes if h not in stored_rows))
        stored = stored_vectors(self.dense.index)
        fresh: dict[str, np.ndarray] = {}
        if missing:
            embedder = embedder or corpus_encoder(self.dense.params.embedding_model)
            text_of = {h: d.search_text for h, d in zip(hashes, docs, strict=True)}
            encoded = np.asarray(embedder.encode([text_of[h] for h in missing]), dtype=np.float32)
            if encoded.shape[1] != stored.shape[1]:
                raise ValueError(f"the embedder gives {encoded.shape[1]}-dimensional vectors; this index holds "
                                 f"{stored.shape[1]}-dimensional ones ({self.dense.params.embedding_model})")
            fresh = dict(zip(missing, encoded, strict=True))
        rows = [fresh[h] if h in fresh else stored[stored_rows[h]] for h in hashes]
        return np.stack(rows).astype(np.float32, copy=False), len(missing)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the index as a new version of ``folder`` and switch to it (``index_versions``).

        ``manifest.json`` is replaced atomically and last: a kill before that leaves the previous
        version in place and loadable. Returns ``folder``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with index_versions.save_lock(folder):
            previous = None
            if (folder / MANIFEST_FILE).is_file():
                try:
                    previous = read_manifest(folder)
                except IndexFormatError:
                    previous = None
            keep = {previous.data} if previous is not None and previous.data else set()
            index_versions.sweep_versions(folder, keep)  # what killed saves left, and older versions
            generation = (previous.generation if previous is not None else 0) + 1
            name = index_versions.new_version_name(generation)
            data = folder / name
            data.mkdir()
            self.store.save(data)
            self.bm25.save(data / BM25_DIR)
            if self.dense is not None:
                self.dense.save(data / DENSE_DIR)
            index_versions.fsync_tree(data)
            manifest = self.manifest.model_copy(update={
                "version": INDEX_VERSION, "generation": generation, "data": name, "n_docs": len(self.store),
            })
            write_json_atomic(folder / MANIFEST_FILE, json.loads(manifest.model_dump_json()))
            self.manifest = manifest
            if previous is not None and previous.data is None:
                index_versions.remove_v1_files(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, with_dense: bool = True, encoder=None,
             allowed_embedding_models: Collection[str] = DEFAULT_ALLOWED_EMBEDDING_MODELS) -> RagIndex:
        """Load an index folder, or the index of an ETL run folder (``<run>/index``), reading only files inside it.

        ``with_dense=False`` skips FAISS and the encoder. ``allowed_embedding_models``: the
        embedding models (hub ids or paths) the index may name besides model folders inside
        itself (``confine_embedding_model``).
        """
        folder = locate_index(folder)
        manifest = read_manifest(folder)
        prefix = f"{manifest.data}/" if manifest.data else ""
        try:
            store = DocStore.load(_inside(folder, prefix + DOCS_FILE))
        except ValueError as exc:
            raise IndexFormatError(str(exc)) from exc
        for name in BM25S_FILES:
            _inside(folder, f"{prefix}{BM25_DIR}/{name}")
        bm25 = Bm25Retriever.load(_inside(folder, prefix + BM25_DIR), store)
        dense = None
        if with_dense and manifest.dense is not None:
            for name in DENSE_FILES:
                _inside(folder, f"{prefix}{DENSE_DIR}/{name}")
            dense_dir = _inside(folder, prefix + DENSE_DIR)
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


def _reusable(folder: Path, dense_params: DenseParams | None, bm25_params: Bm25Params | None,
              with_dense: bool) -> RagIndex | None:
    """The index already at ``folder`` when an update of it gives what a rebuild would, else ``None``."""
    if not (folder / MANIFEST_FILE).is_file():
        return None
    try:
        index = RagIndex.load(folder, with_dense=with_dense)
    except (IndexFormatError, ValueError):
        return None  # damaged or foreign: rebuilt from scratch
    if (index.dense is None) == with_dense or index.bm25.params != (bm25_params or Bm25Params()):
        return None
    if with_dense and dense_params is not None:
        assert index.dense is not None
        ours = index.dense.params.model_dump(exclude={"dim", "nlist"})
        if ours != dense_params.model_dump(exclude={"dim", "nlist"}):
            return None
    return index


def build_index(
    source: str | Path,
    out: str | Path,
    *,
    bm25_params: Bm25Params | None = None,
    dense_params: DenseParams | None = None,
    with_dense: bool = True,
    rebuild: bool = False,
    progress=None,
) -> RagIndex:
    """Index an ETL run folder (``chunks.jsonl``) or a BEIR folder (``corpus.jsonl``) into ``out``.

    When ``out`` already holds an index with the same parameters, it is updated in place
    (``RagIndex.refresh``: only new or changed texts are encoded; ``index.last_update`` says what
    changed) unless ``rebuild``.
    """
    source, out = Path(source), Path(out)
    kind, docs = load_documents(source)
    index = None if rebuild else _reusable(out, dense_params, bm25_params, with_dense)
    if index is not None:
        if index.store.docs == docs:
            index.last_update = UpdateReport(unchanged=len(docs))
            return index  # nothing changed: no new version
        index.last_update = index.refresh(docs)
        index.manifest = index.manifest.model_copy(update={"source": str(source), "source_kind": kind})
    else:
        index = RagIndex.build(
            docs, bm25_params=bm25_params, dense_params=dense_params, with_dense=with_dense,
            source=str(source), source_kind=kind, progress=progress,
        )
    index.save(out)
    return index


def write_run_index(folder: str | Path, docs: Sequence[IndexedDoc], vectors: np.ndarray, *, embedding_model: str,
                    source: str | None = None) -> UpdateReport | None:
    """Write an ETL run's index (``<run>/index``) from the vectors the ETL computed (no encoder call).

    An index already there is updated (a new version, switched to atomically); the old ETL
    files (``chunks.faiss``, ``id_map.json``, ``metadata.jsonl``) are removed once it is written.
    With no documents, the index is withdrawn (its manifest removed) and ``None`` returned.
    """
    folder = Path(folder)
    docs = list(docs)
    if not docs:
        (folder / MANIFEST_FILE).unlink(missing_ok=True)
        return None
    params = DenseParams(embedding_model=embedding_model)
    index = _reusable(folder, params, None, True)
    if index is not None:
        assert index.dense is not None
        if index.store.docs == docs and np.array_equal(stored_vectors(index.dense.index), vectors):
            return UpdateReport(unchanged=len(docs))  # nothing changed: no new version
        report = index.refresh(docs, vectors=vectors)
    else:
        index = RagIndex.build(docs, vectors=vectors, dense_params=params, source=source, source_kind="etl")
        report = UpdateReport(added=len(docs))
    index.save(folder)
    for name in (*OLD_ETL_INDEX_FILES, "metadata.jsonl"):
        (folder / name).unlink(missing_ok=True)
    return report
