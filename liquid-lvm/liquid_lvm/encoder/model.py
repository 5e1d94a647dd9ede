"""``IsotropicGaussianEncoder``: a sentence-transformers base plus a linear projection head.

The model *is* a ``SentenceTransformer`` with the modules::

    Transformer -> Pooling -> Normalize -> Dense (the head, no activation) -> Normalize

The base part (Transformer, Pooling, Normalize) is the base model's own pipeline, so its output
is exactly what ``liquid_shared.embeddings.Embedder`` caches for the base: with a frozen base the
head trains on those cached vectors. The head's raw output ``z`` (before the last Normalize) is
what SIGReg pushes toward N(0, I); retrieval uses the unit vector z/‖z‖ (cosine), which for an
isotropic Gaussian z is uniform on the sphere. The head starts as sqrt(D)·I (a square head) or a
scaled random semi-orthogonal map, so an isotropic base vector of norm 1 gives coordinates of
variance about 1, and a square head starts with exactly the base model's rankings.

``save(path)`` writes a plain sentence-transformers folder: ``SentenceTransformer(path)`` loads it
with no code of ours, so ``rag_runtime build-index --embedding-model PATH`` uses it as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

FreezeMode = Literal["frozen", "last_n", "full"]


class EncoderModelError(ValueError):
    """The base model cannot be loaded or the encoder settings are inconsistent (message names it)."""


def resolve_base(name: str) -> str:
    """A local folder for ``name`` (the offline MiniLM alias, a path), or a clear error."""
    from liquid_shared.offline import (
        MINILM_ID,
        OfflineModelMissing,
        bundled_alias,
        known_names_hint,
        minilm_path,
    )

    if bundled_alias(name) == MINILM_ID:  # 'all-MiniLM-L6-v2', its hub id, our alias: the bundled copy
        try:
            return str(minilm_path())
        except OfflineModelMissing as exc:
            raise EncoderModelError(f"base model {name!r}: {exc}") from None
    path = Path(name).expanduser()
    if path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        return str(path)
    from huggingface_hub import try_to_load_from_cache

    if "/" in name and not path.exists() and isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name
    raise EncoderModelError(f"base model {name!r} is not available offline: not a sentence-transformers folder and "
                            f"not in the Hugging Face cache; {known_names_hint()}")


def _base_modules(base_path: str, device: str) -> list[nn.Module]:
    """Transformer, Pooling, Normalize of a sentence-transformers model (Normalize added if absent)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    base = SentenceTransformer(base_path, device=device)
    modules = list(base)
    if len(modules) < 2 or not isinstance(modules[1], Pooling):
        raise EncoderModelError(f"base model {base_path}: expected Transformer then Pooling modules, got "
                                f"{[type(m).__name__ for m in modules]}")
    return [modules[0], modules[1], Normalize()]


def init_head_weight(in_dim: int, out_dim: int, seed: int = 0) -> Tensor:
    """sqrt(out_dim) times the identity (square) or a random semi-orthogonal (out_dim, in_dim) matrix."""
    if in_dim == out_dim:
        return torch.eye(out_dim) * math.sqrt(out_dim)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=g))
    w = q if out_dim > in_dim else q.T                       # orthonormal columns or rows
    # unit-norm isotropic inputs: each output coordinate then has variance about 1
    return w[:out_dim, :in_dim].contiguous() * math.sqrt(max(in_dim, out_dim))


class IsotropicGaussianEncoder(nn.Module):
    """A base sentence encoder plus a linear head; see the module docstring.

    ``freeze``: ``"frozen"`` (train the head only), ``"last_n"`` (the head and the base's last
    ``n_unfrozen`` transformer layers) or ``"full"`` (everything).
    """

    def __init__(self, base: str = "offline:all-minilm-l6-v2", out_dim: int | None = None, *,
                 freeze: FreezeMode = "frozen", n_unfrozen: int = 2, max_seq_length: int | None = 256,
                 seed: int = 0, device: str = "cpu"):
        super().__init__()
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize

        if freeze not in ("frozen", "last_n", "full"):
            raise EncoderModelError(f"freeze must be 'frozen', 'last_n' or 'full', got {freeze!r}")
        self.base_name = base
        base_mods = _base_modules(resolve_base(base), device)
        self.in_dim = int(base_mods[1].get_embedding_dimension())
        self.out_dim = int(out_dim or self.in_dim)
        if self.out_dim < 1:
            raise EncoderModelError(f"out_dim must be positive, got {out_dim}")
        head = Dense(self.in_dim, self.out_dim, bias=True, activation_function=nn.Identity(),
                     init_weight=init_head_weight(self.in_dim, self.out_dim, seed),
                     init_bias=torch.zeros(self.out_dim))
        self.st = SentenceTransformer(modules=[*base_mods, head, Normalize()], device=device)
        if max_seq_length is not None:
            self.st.max_seq_length = max_seq_length
        self.freeze, self.n_unfrozen = freeze, n_unfrozen
        self.set_trainable(freeze, n_unfrozen)

    # parts -------------------------------------------------------------------------------------

    @property
    def transformer(self) -> nn.Module:
        return self.st[0]

    @property
    def head(self) -> nn.Module:
        return self.st[3]

    def base_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.st[0], self.st[1]) for p in m.parameters()]

    def set_trainable(self, freeze: FreezeMode, n_unfrozen: int = 2) -> None:
        """Freeze the base, all of it but its last ``n_unfrozen`` layers, or nothing; the head always trains."""
        for p in self.base_parameters():
            p.requires_grad_(freeze == "full")
        if freeze == "last_n":
            layers = _encoder_layers(self.transformer)
            if not 0 < n_unfrozen <= len(layers):
                raise EncoderModelError(f"n_unfrozen must be in 1..{len(layers)} for this base, got {n_unfrozen}")
            for layer in layers[-n_unfrozen:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.freeze, self.n_unfrozen = freeze, n_unfrozen
        self.train(self.training)

    def train(self, mode: bool = True) -> IsotropicGaussianEncoder:
        """A frozen base stays in eval mode (no dropout): it is a fixed function, the one the cache holds."""
        super().train(mode)
        if self.freeze == "frozen":
            self.st[0].eval()
        return self

    def optimizer_groups(self, weight_decay: float, lr_base: float, lr_head: float) -> list[dict[str, Any]]:
        """AdamW groups: head and trainable base, each with its own learning rate (decay on matrices only)."""
        head_ids = {id(p) for p in self.head.parameters()}
        groups = []
        for name, lr, params in (("head", lr_head, list(self.head.parameters())),
                                 ("base", lr_base, [p for p in self.base_parameters() if p.requires_grad
                                                    and id(p) not in head_ids])):
            for decay in (True, False):
                chosen = [p for p in params if p.requires_grad and (p.dim() >= 2) == decay]
                if chosen:
                    groups.append({"params": chosen, "lr": lr, "weight_decay": weight_decay if decay else 0.0,
                                   "name": f"{name}_{'decay' if decay else 'no_decay'}"})
        return groups

    # forward -----------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        features = self.st.preprocess(list(texts))
        device = next(self.parameters()).device
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}

    def base_embeddings(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm base vectors (Transformer, Pooling, Normalize), with gradients where the base trains."""
        features = self.tokenize(texts)
        for module in (self.st[0], self.st[1], self.st[2]):
            features = module(features)
        return features["sentence_embedding"]

    def project(self, base_vectors: Tensor) -> Tensor:
        """The head's raw output z (what SIGReg regularises)."""
        return self.head({"sentence_embedding": base_vectors})["sentence_embedding"]

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.project(self.base_embeddings(texts))

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True,
               show_progress: bool = False) -> np.ndarray:
        """Float32 vectors (unit norm unless ``normalize=False``: then the raw z)."""
        was_training = self.training
        self.eval()
        try:
            if normalize:
                return np.asarray(self.st.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                                 normalize_embeddings=True, show_progress_bar=show_progress),
                                  dtype=np.float32)
            parts = [self(texts[i:i + batch_size]).float().cpu().numpy() for i in range(0, len(texts), batch_size)]
            return np.concatenate(parts) if parts else np.zeros((0, self.out_dim), np.float32)
        finally:
            self.train(was_training)

    def save(self, path: Path | str) -> Path:
        """A sentence-transformers folder that plain ``SentenceTransformer(path)`` loads."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.st.save(str(path))
        return path


def _encoder_layers(transformer: nn.Module) -> list[nn.Module]:
    model = transformer.auto_model
    for attr in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
        obj: Any = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList):
            return list(obj)
    raise EncoderModelError(f"cannot find the transformer layers of {type(model).__name__} to unfreeze")
