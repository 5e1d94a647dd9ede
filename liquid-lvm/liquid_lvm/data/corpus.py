"""Embedded documents, document-disjoint splits and context windows, saved to one folder.

A prepared folder holds ``vectors.safetensors`` (``vectors``: every chunk's embedding, float32
``[N, D]``, documents one after another in reading order; ``windows_<split>``: the first chunk
index of each window) and ``corpus.json`` (model, dim, documents with their chunk ranges, texts,
the split of every document, context length, stride, seed and the counts per split).

A window of context length T starting at chunk ``s`` reads chunks ``s .. s+T-1`` and predicts
chunk ``s+T``, all inside one document: no window crosses a document boundary. Documents with
fewer than T+1 chunks give no window and are counted as skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liquid_lvm.data.documents import OrderedDocument

SPLITS = ("train", "val", "test")
VECTORS_FILE = "vectors.safetensors"
META_FILE = "corpus.json"


@dataclass
class ChunkCorpus:
    """Chunk vectors of ordered documents; document ``i`` owns rows ``offsets[i]:offsets[i+1]``."""

    vectors: np.ndarray
    doc_ids: list[str]
    titles: list[str]
    offsets: np.ndarray
    texts: list[str]
    model: str
    splits: dict[str, list[int]] = field(default_factory=dict)  # split -> document indices
    context: int = 0
    stride: int = 1
    seed: int = 0
    windows: dict[str, np.ndarray] = field(default_factory=dict)  # split -> window start rows
    skipped_short: dict[str, int] = field(default_factory=dict)  # split -> documents with < T+1 chunks

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def doc_of_row(self) -> np.ndarray:
        """Document index of every chunk row."""
        return np.repeat(np.arange(len(self.doc_ids)), np.diff(self.offsets))

    def rows(self, split: str) -> np.ndarray:
        """Chunk rows of the split's documents (its retrieval bank), in document order."""
        docs = self.splits[split]
        if not docs:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.offsets[d], self.offsets[d + 1]) for d in docs])

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {"documents": len(self.splits.get(s, [])), "chunks": int(self.rows(s).size),
                    "windows": int(self.windows.get(s, np.zeros(0)).size),
                    "skipped_short_documents": int(self.skipped_short.get(s, 0))} for s in self.splits}


def embed_documents(docs: list[OrderedDocument], model: str | None = None, *, embedder=None,
                    show_progress: bool = False) -> ChunkCorpus:
    """Embed every chunk (``liquid_shared.embeddings``, cached on disk; all-MiniLM-L6-v2 by default)."""
    if not docs:
        raise ValueError("no documents to embed (the document list is empty)")
    if embedder is None:
        from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL, get_embedder

        embedder = get_embedder(model or DEFAULT_EMBEDDING_MODEL)
    texts = [t for d in docs for t in d.chunks]
    vectors = np.asarray(embedder.encode(texts, show_progress=show_progress), dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(d.chunks) for d in docs])]).astype(np.int64)
    return ChunkCorpus(vectors=vectors, doc_ids=[d.doc_id for d in docs], titles=[d.title for d in docs],
                       offsets=offsets, texts=texts, model=getattr(embedder, "model_name", model or "unknown"))


def split_documents(n_docs: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                    seed: int = 0) -> dict[str, list[int]]:
    """Seeded random partition of document indices into train/val/test (each document in one split)."""
    if n_docs < 3:
        raise ValueError(f"need at least 3 documents for train/val/test splits, got {n_docs}")
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n_docs)
    n_val = max(1, round(fractions[1] * n_docs))
    n_test = max(1, round(fractions[2] * n_docs))
    n_train = n_docs - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n_docs} documents leave none for training with fractions {fractions}")
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: sorted(int(i) for i in v) for k, v in parts.items()}


def window_starts(offsets: np.ndarray, docs: list[int], context: int, stride: int = 1) -> tuple[np.ndarray, int]:
    """First rows of every window (context ``context`` + 1 target) inside the given documents, and
    how many of them were too short for one window."""
    if context < 1 or stride < 1:
        raise ValueError(f"context length and stride must be >= 1, got context={context}, stride={stride}")
    starts, short = [], 0
    for d in docs:
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        if hi - lo < context + 1:
            short += 1
            continue
        starts.append(np.arange(lo, hi - context, stride))
    return (np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)).astype(np.int64), short


def make_windows(corpus: ChunkCorpus, context: int, stride: int = 1) -> ChunkCorpus:
    """Fill ``corpus.windows`` for every split (``corpus.splits`` must be set)."""
    if not corpus.splits:
        raise ValueError("corpus has no splits; call split_documents first")
    corpus.context, corpus.stride = context, stride
    for split, docs in corpus.splits.items():
        corpus.windows[split], corpus.skipped_short[split] = window_starts(corpus.offsets, docs, context, stride)
    return corpus


def save_corpus(corpus: ChunkCorpus, folder: Path) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"vectors": np.ascontiguousarray(corpus.vectors, dtype=np.float32)}
    tensors.update({f"windows_{s}": np.ascontiguousarray(w, dtype=np.int64) for s, w in corpus.windows.items()})
    save_file(tensors, str(folder / VECTORS_FILE))
    meta = {"model": corpus.model, "dim": corpus.dim, "doc_ids": corpus.doc_ids, "titles": corpus.titles,
            "offsets": corpus.offsets.tolist(), "texts": corpus.texts, "splits": corpus.splits,
            "context": corpus.context, "stride": corpus.stride, "seed": corpus.seed,
            "skipped_short": corpus.skipped_short, "counts": corpus.counts()}
    (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return folder


def load_corpus(folder: str | Path) -> ChunkCorpus:
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / VECTORS_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a prepared LVM corpus (needs {META_FILE} and {VECTORS_FILE}; "
                                "run `python -m liquid_lvm prepare`)")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / VECTORS_FILE))
    vectors = tensors["vectors"]
    if vectors.shape != (len(meta["texts"]), meta["dim"]):
        raise ValueError(f"{folder}: vectors have shape {vectors.shape}, corpus.json says "
                         f"({len(meta['texts'])}, {meta['dim']})")
    return ChunkCorpus(vectors=vectors, doc_ids=meta["doc_ids"], titles=meta["titles"],
                       offsets=np.asarray(meta["offsets"], dtype=np.int64), texts=meta["texts"], model=meta["model"],
                       splits={k: list(v) for k, v in meta["splits"].items()}, context=meta["context"],
                       stride=meta["stride"], seed=meta["seed"],
                       windows={s: tensors[f"windows_{s}"] for s in meta["splits"] if f"windows_{s}" in tensors},
                       skipped_short=meta.get("skipped_short", {}))


def prepare_corpus(docs: list[OrderedDocument], *, context: int = 8, stride: int = 1, seed: int = 0,
                   fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), model: str | None = None,
                   embedder=None, show_progress: bool = False, test_only: bool = False) -> ChunkCorpus:
    """Embed, split by document with ``seed`` and cut windows: the whole ``prepare`` step.

    ``test_only`` puts every document in the test split (an out-of-domain evaluation set)."""
    corpus = embed_documents(docs, model, embedder=embedder, show_progress=show_progress)
    corpus.seed = seed
    corpus.splits = ({"test": list(range(len(docs)))} if test_only else split_documents(len(docs), fractions, seed))
    return make_windows(corpus, context, stride)
