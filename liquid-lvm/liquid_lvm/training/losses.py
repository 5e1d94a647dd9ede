"""Losses of a predicted vector against the true next vector, and their weighted mixture.

* ``mse``: mean squared error (LCM's Base-LCM objective; it regresses to the mean of plausible
  continuations, arXiv 2412.08821);
* ``cosine``: 1 - cos(pred, target);
* ``infonce``: cross-entropy of the true target among the batch's other targets (in-batch
  negatives) plus a bank of extra negative vectors, on cosine / temperature. Bank rows equal to
  a query's own target row are masked out, so the truth is never its own negative.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

LossName = Literal["mse", "cosine", "infonce"]


class LossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[LossName, float] = Field(default_factory=lambda: {"infonce": 1.0},
                                           description="Weight of each loss in the mixture, e.g. "
                                                       "{infonce: 1, mse: 0.5}.")
    temperature: float = Field(0.05, gt=0, description="InfoNCE temperature.")
    bank_size: int = Field(1024, ge=0, description="InfoNCE: extra negatives drawn from the training chunks "
                                                   "each step (0 = in-batch only).")

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if not self.weights or all(w == 0 for w in self.weights.values()) or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"loss weights must be >= 0 with at least one > 0, got {self.weights}")
        return self


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def infonce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 0.05,
                 bank: torch.Tensor | None = None, target_rows: torch.Tensor | None = None,
                 bank_rows: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch targets (the diagonal is the truth) plus ``bank [M, D]`` negatives."""
    p = F.normalize(pred, dim=-1)
    cands = F.normalize(target, dim=-1)
    logits = p @ cands.T
    if target_rows is not None:  # the same chunk twice in a batch is not a negative of itself
        same = target_rows[:, None] == target_rows[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(p), dtype=torch.bool, device=p.device), float("-inf"))
    if bank is not None and bank.numel():
        extra = p @ F.normalize(bank, dim=-1).T
        if target_rows is not None and bank_rows is not None:
            extra = extra.masked_fill(target_rows[:, None] == bank_rows[None, :], float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    labels = torch.arange(len(p), device=p.device)
    return F.cross_entropy(logits / temperature, labels)


class NextVectorLoss:
    """``loss_fn(model, batch)`` for the training loop: batch = (context, mask, target, target_row).

    ``vectors`` are all chunk vectors (rows as in ``target_row``) and ``pool`` the rows the bank
    negatives are drawn from (the training chunks).
    """

    def __init__(self, config: LossConfig, vectors: torch.Tensor | None = None, pool: torch.Tensor | None = None,
                 seed: int = 0):
        self.config = config
        self.vectors = vectors
        self.pool = pool
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model, batch):
        context, mask, target, rows = batch
        pred = model(context, mask)
        parts: dict[str, torch.Tensor] = {}
        w = self.config.weights
        if w.get("mse"):
            parts["mse"] = mse_loss(pred, target)
        if w.get("cosine"):
            parts["cosine"] = cosine_loss(pred, target)
        if w.get("infonce"):
            bank = bank_rows = None
            if self.vectors is not None and self.pool is not None and self.config.bank_size:
                pick = torch.randint(0, len(self.pool), (min(self.config.bank_size, len(self.pool)),),
                                     generator=self.generator)
                bank_rows = self.pool[pick]
                bank = self.vectors[bank_rows].to(pred.device)
                bank_rows = bank_rows.to(pred.device)
            parts["infonce"] = infonce_loss(pred, target, self.config.temperature, bank, rows, bank_rows)
        total = sum(w[k] * v for k, v in parts.items())
        return total, {f"loss_{k}": float(v.detach()) for k, v in parts.items()}
