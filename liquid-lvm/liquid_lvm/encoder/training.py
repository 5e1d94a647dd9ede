"""Training the encoder with the shared loop (``liquid_lvm.training.train``).

Two paths, one objective and one loop:

* **cached** (frozen base only): the base vectors of every query and document are computed once
  (``base_vectors``: through ``liquid_shared.embeddings.Embedder`` and its on-disk cache when the
  base is untouched) and the head trains on rows of those tensors: no transformer forward at all.
* **through the base**: every step tokenises the batch's texts and runs the transformer (the
  trainable layers get gradients); the only choice for a partly or fully unfrozen base.

With a frozen base both paths compute the same function of the same batches, so they give the
same head (tested); the cached one is orders of magnitude faster (``bench/bench_encoder.py``).
The module the loop trains is ``PairModule``: ``forward(q, p, n)`` takes index tensors, so the
data of both paths is the same ``TensorDataset`` of (query, positive, negative) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from liquid_lvm.encoder.model import IsotropicGaussianEncoder
from liquid_lvm.encoder.objective import EncoderObjective, ObjectiveConfig
from liquid_lvm.encoder.pairs import PairSet


class EncoderTrainConfig(BaseModel):
    """Encoder-specific settings on top of the shared loop's ``TrainConfig``."""

    model_config = ConfigDict(extra="forbid")

    lr_head: float = Field(1e-3, gt=0, description="Learning rate of the projection head.")
    lr_base: float = Field(2e-5, gt=0, description="Learning rate of the trainable base layers.")
    cached: bool | None = Field(None, description="Train the head on cached base vectors; None = when the base is "
                                "frozen. Needs a frozen base.")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)


def base_vectors(encoder: IsotropicGaussianEncoder, texts: Sequence[str], batch_size: int = 64,
                 use_cache: bool = True) -> Tensor:
    """Unit-norm base vectors of ``texts`` (the head's inputs), float32 on the CPU.

    With ``use_cache`` (and an untrained base) they come from the shared ``Embedder`` and its
    on-disk cache, keyed by the base model: a second run over the same corpus encodes nothing.
    """
    if use_cache:
        from liquid_shared.embeddings import Embedder

        emb = Embedder(encoder.base_name, batch_size=batch_size, cache=True)  # the shared cache of the base
        emb.model.max_seq_length = encoder.st.max_seq_length
        return torch.from_numpy(emb.encode(list(texts)).copy())
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = torch.cat([encoder.base_embeddings(texts[i:i + batch_size]).float().cpu()
                         for i in range(0, len(texts), batch_size)])
    encoder.train(was)
    return out


class PairModule(nn.Module):
    """What the loop trains: index rows in, raw head outputs (zq, zp, zn) out."""

    def __init__(self, encoder: IsotropicGaussianEncoder, pairs: PairSet, *, lr_base: float, lr_head: float,
                 cache: tuple[Tensor, Tensor] | None = None):
        super().__init__()
        if cache is not None and encoder.freeze != "frozen":
            raise ValueError("cached base vectors need a frozen base (freeze='frozen')")
        self.encoder = encoder
        self.queries, self.docs = pairs.queries, pairs.docs
        self.lr_base, self.lr_head = lr_base, lr_head
        self.cached = cache is not None
        if cache is not None:
            self.register_buffer("query_cache", cache[0], persistent=False)
            self.register_buffer("doc_cache", cache[1], persistent=False)

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return self.encoder.optimizer_groups(weight_decay, self.lr_base, self.lr_head)

    def _base(self, rows: Tensor, texts: list[str], cache_name: str) -> Tensor:
        if self.cached:
            return getattr(self, cache_name)[rows]
        return self.encoder.base_embeddings([texts[int(i)] for i in rows])

    def forward(self, q: Tensor, p: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        neg = n[n >= 0]
        parts = [self._base(q, self.queries, "query_cache"), self._base(p, self.docs, "doc_cache")]
        if neg.numel():
            parts.append(self._base(neg, self.docs, "doc_cache"))
        base = torch.cat(parts)
        z = self.encoder.project(base)
        b, m = q.shape[0], p.shape[0]
        return z[:b], z[b:b + m], z[b + m:]


def make_loss(objective: EncoderObjective):
    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]):
        q, p, n = batch
        zq, zp, zn = model(q, p, n)
        has_neg = n >= 0
        return objective(zq, zp, p, zn, n[has_neg])

    return loss_fn


@dataclass
class EncoderTrainResult:
    loop: Any  # liquid_lvm.training.TrainResult
    cached: bool
    seconds_per_epoch: float
    history: list[dict[str, float]]


def train_encoder(encoder: IsotropicGaussianEncoder, pairs: PairSet, train_config=None,
                  encoder_config: EncoderTrainConfig | None = None, *, validate=None,
                  cache: tuple[Tensor, Tensor] | None = None, checkpoint_dir: Path | None = None,
                  run: Any = None) -> EncoderTrainResult:
    """Train ``encoder`` in place on ``pairs`` with the shared loop; returns timings and history.

    ``validate(encoder) -> {metric: value}`` is called by the loop (rank 0) every
    ``train_config.eval_every`` steps; ``cache`` = (query vectors, document vectors) skips computing
    them (``base_vectors``) for the cached path.
    """
    from liquid_lvm.training import TrainConfig, train

    train_config = train_config or TrainConfig()
    cfg = encoder_config or EncoderTrainConfig()
    cached = encoder.freeze == "frozen" if cfg.cached is None else cfg.cached
    if cached and encoder.freeze != "frozen":
        raise ValueError(f"cached=True needs a frozen base, but freeze={encoder.freeze!r}")
    if cached and cache is None:
        cache = (base_vectors(encoder, pairs.queries), base_vectors(encoder, pairs.docs))
    module = PairModule(encoder, pairs, lr_base=cfg.lr_base, lr_head=cfg.lr_head, cache=cache if cached else None)
    objective = EncoderObjective(cfg.objective)
    wrapped_validate = None if validate is None else (lambda m: validate(m.encoder))
    meta = {"model_type": "isotropic_gaussian_encoder", "base": encoder.base_name, "freeze": encoder.freeze,
            "out_dim": encoder.out_dim, "cached": cached, "objective": cfg.objective.model_dump(mode="json"),
            "pairs": pairs.name, "synthetic_labels": pairs.synthetic}
    result = train(module, make_loss(objective), pairs.dataset(), train_config, validate=wrapped_validate,
                   checkpoint_dir=checkpoint_dir, checkpoint_meta=meta, run=run)
    steps_per_epoch = max(1, -(-len(pairs) // train_config.batch_size))
    epochs = result.steps / steps_per_epoch
    return EncoderTrainResult(result, cached, result.seconds / epochs if epochs else float("nan"), result.history)


@torch.no_grad()
def head_vectors(encoder: IsotropicGaussianEncoder, base: Tensor, normalize: bool = True) -> np.ndarray:
    """The encoder's vectors from precomputed base vectors (exactly ``encode`` when the base is frozen)."""
    z = encoder.project(base.to(next(encoder.parameters()).device)).float()
    if normalize:
        z = torch.nn.functional.normalize(z, dim=-1)
    return z.cpu().numpy()
