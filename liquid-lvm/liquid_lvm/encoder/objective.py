"""The encoder's training objective: in-batch InfoNCE plus an optional isotropy regulariser.

    loss = (1 − λ) · InfoNCE + λ · R,     R ∈ {SIGReg, covariance-to-identity penalty, none}

**InfoNCE** (the multiple-negatives ranking loss of sentence-transformers, van den Oord et al.
2018): query i's positive is document i of the batch; the other documents of the batch and every
hard negative are its negatives; logits are ``scale`` times cosines. A column that holds the
query's own positive again (the same document id twice in a batch) is masked, not counted as a
negative. ``symmetric`` adds the document-to-query direction and averages the two.

**DDP.** Every embedding is all-gathered with gradients and the loss of the *global* batch is
computed on every rank; with DDP's gradient averaging this gives exactly the gradient of
single-process training on the same global batch (tested with torchrun, gloo).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.nn import functional as F

from liquid_lvm.encoder.sigreg import SIGReg, covariance_identity_penalty

Regulariser = Literal["none", "sigreg", "covariance"]


class ObjectiveConfig(BaseModel):
    """Settings of the loss."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(20.0, gt=0, description="Inverse temperature of the InfoNCE logits (cosine x scale).")
    symmetric: bool = Field(False, description="Also the document-to-query InfoNCE, averaged with query-to-document.")
    regulariser: Regulariser = Field("none", description="Isotropy term: 'sigreg' (Epps-Pulley over random "
                                     "directions), 'covariance' (||Cov - I||^2_F / D) or 'none'.")
    lam: float = Field(0.02, ge=0, le=1, description="Weight lambda of the regulariser: (1-lambda) task + lambda R.")
    n_directions: int = Field(256, ge=1, description="SIGReg: random unit directions, redrawn every step.")
    seed: int = Field(0, description="SIGReg: seed of the directions (with the step number).")


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` over DDP ranks with gradients (identity in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x), dim=0)
    return x


def gather_ids(x: Tensor) -> Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return x


def info_nce(zq: Tensor, zd: Tensor, doc_ids: Tensor, scale: float = 20.0, zn: Tensor | None = None,
             neg_ids: Tensor | None = None, symmetric: bool = False) -> Tensor:
    """InfoNCE over a batch: query i's positive is ``zd[i]``; other documents and ``zn`` are negatives."""
    q, d = F.normalize(zq, dim=-1), F.normalize(zd, dim=-1)
    cand, cand_ids = d, doc_ids
    if zn is not None and zn.shape[0]:
        cand = torch.cat([d, F.normalize(zn, dim=-1)])
        cand_ids = torch.cat([doc_ids, neg_ids])
    n = q.shape[0]
    eye = torch.zeros(n, cand.shape[0], dtype=torch.bool, device=q.device)
    eye[:, :n] = torch.eye(n, dtype=torch.bool, device=q.device)
    same = (cand_ids.unsqueeze(0) == doc_ids.unsqueeze(1)) & ~eye  # the positive again: not a negative
    logits = (scale * q @ cand.T).masked_fill(same, float("-inf"))
    labels = torch.arange(n, device=q.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        same_q = (doc_ids.unsqueeze(0) == doc_ids.unsqueeze(1)) & ~torch.eye(n, dtype=torch.bool, device=q.device)
        back = (scale * d @ q.T).masked_fill(same_q, float("-inf"))
        loss = (loss + F.cross_entropy(back, labels)) / 2
    return loss


class EncoderObjective:
    """``objective(zq, zp, doc_ids, zn, neg_ids) -> (loss, logs)``; counts calls for SIGReg's directions."""

    def __init__(self, config: ObjectiveConfig | None = None):
        self.config = config or ObjectiveConfig()
        self.sigreg = SIGReg(self.config.n_directions, self.config.seed)
        self.step = 0

    def __call__(self, zq: Tensor, zp: Tensor, doc_ids: Tensor, zn: Tensor | None = None,
                 neg_ids: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        zq, zp, doc_ids = gather(zq), gather(zp), gather_ids(doc_ids)
        if zn is not None:
            zn, neg_ids = gather(zn), gather_ids(neg_ids)
        task = info_nce(zq, zp, doc_ids, cfg.scale, zn, neg_ids, cfg.symmetric)
        logs = {"info_nce": float(task.detach())}
        loss = task
        if cfg.regulariser != "none":
            z = torch.cat([zq, zp] + ([zn] if zn is not None and zn.shape[0] else []))
            reg = self.sigreg(z, self.step) if cfg.regulariser == "sigreg" else covariance_identity_penalty(z)
            logs[cfg.regulariser] = float(reg.detach())
            loss = (1 - cfg.lam) * task + cfg.lam * reg
        self.step += 1
        return loss, logs
