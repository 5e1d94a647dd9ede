"""Sentence embeddings: a sentence-transformers encoder with batching and an on-disk cache.

The cache is keyed by (model name, sha256 of the text) and stored as one ``.npy`` shard per
``encode`` call plus an index, so repeated runs over the same corpus encode nothing twice.
Vectors are float32 and L2-normalised by default (inner product = cosine).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liquid_shared import compute_thread
from liquid_shared.config import get_settings
from liquid_shared.offline import MINILM_ID, bundled_alias, minilm_path

DEFAULT_EMBEDDING_MODEL = MINILM_ID


def _resolve_model_path(name: str) -> str:
    if bundled_alias(name) == MINILM_ID:  # 'all-MiniLM-L6-v2', its hub id, our alias: the bundled copy
        return str(minilm_path())
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    return name  # a hub id: works when the user has it cached or has network


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Append-only cache of vectors per model: ``<dir>/<model-slug>/{keys.txt, shard-N.npy}``."""

    def __init__(self, folder: Path, dim: int):
        self.folder = folder
        self.dim = dim
        self._lock = threading.Lock()
        self._vectors: dict[str, np.ndarray] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        for shard in sorted(self.folder.glob("shard-*.npy")):
            keys_file = shard.with_suffix(".keys")
            if not keys_file.is_file():
                continue  # an interrupted write: ignore the orphan shard
            keys = keys_file.read_text().split()
            arr = np.load(shard)
            if arr.shape != (len(keys), self.dim):
                continue
            self._vectors.update(zip(keys, arr, strict=True))

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        return [self._vectors.get(k) for k in keys]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        with self._lock:
            n = len(list(self.folder.glob("shard-*.npy")))
            shard = self.folder / f"shard-{n:06d}.npy"
            np.save(shard, vectors.astype(np.float32))
            # keys written last: a shard without keys is ignored on load
            tmp = shard.with_suffix(".keys.tmp")
            tmp.write_text("\n".join(keys))
            tmp.replace(shard.with_suffix(".keys"))
            self._vectors.update(zip(keys, vectors, strict=True))

    def __len__(self) -> int:
        return len(self._vectors)


class Embedder:
    """Batched sentence encoder with an optional on-disk cache.

    >>> emb = Embedder()                      # all-MiniLM-L6-v2 from the offline package
    >>> vecs = emb.encode(["a sentence", "another"])   # (2, 384) float32, unit norm
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        cache: bool | Path = True,
    ):
        from sentence_transformers import SentenceTransformer

        if bundled_alias(model) == MINILM_ID:
            model = MINILM_ID  # one name, so the cache and index manifests agree whatever was typed
        self.model_name = model
        self.batch_size = batch_size
        self.normalize = normalize
        settings = get_settings()
        # loaded and run on the process's compute thread (``compute_thread``: one OpenMP team)
        self.model = compute_thread.run(SentenceTransformer, _resolve_model_path(model),
                                        device=device or settings.device or None)
        self.dim = int(self.model.get_embedding_dimension())
        self._cache: EmbeddingCache | None = None
        if cache:
            root = cache if isinstance(cache, Path) else settings.cache_dir / "embeddings"
            slug = hashlib.sha256(f"{model}|norm={normalize}".encode()).hexdigest()[:12]
            self._cache = EmbeddingCache(root / slug, self.dim)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._cache is None:
            return self._encode(texts, show_progress)
        keys = [_text_key(t) for t in texts]
        found = self._cache.get(keys)
        missing = sorted({k: i for i, (k, v) in enumerate(zip(keys, found, strict=True)) if v is None}.items(), key=lambda kv: kv[1])
        if missing:
            idx = [i for _, i in missing]
            new = self._encode([texts[i] for i in idx], show_progress)
            self._cache.put([k for k, _ in missing], new)
            found = self._cache.get(keys)
        return np.stack(found).astype(np.float32, copy=False)

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        vecs = compute_thread.run(
            self.model.encode,
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(vecs, dtype=np.float32)


_shared: dict[tuple[str, str | None], Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(model: str = DEFAULT_EMBEDDING_MODEL, device: str | None = None) -> Embedder:
    """A process-wide shared ``Embedder`` per (model, device): load the encoder once."""
    key = (model, device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(model, device=device)
        return _shared[key]
