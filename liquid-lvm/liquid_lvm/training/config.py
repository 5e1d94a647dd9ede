"""Settings of the shared training loop (``liquid_lvm.training.train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """Optimiser, schedule, stopping and logging settings; every field has a sane default."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1, description="Passes over the training data (the loop stops earlier at max_steps).")
    max_steps: int | None = Field(None, ge=1, description="Optimiser steps at most; None = epochs x steps per epoch.")
    batch_size: int = Field(64, ge=1, description="GLOBAL batch size: split evenly over the DDP ranks.")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of AdamW.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a share of the peak (cosine floor).")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up, in optimiser steps.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay of matrices; biases and norm gains get none.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; None = no clipping.")
    amp: bool = Field(True, description="Mixed precision on CUDA (bf16 where supported, else fp16 with a scaler); "
                                        "ignored on CPU.")
    seed: int = Field(0, description="Seed of Python, NumPy and torch, and of the data order.")
    eval_every: int = Field(100, ge=1, description="Validate every this many optimiser steps (and at the end).")
    log_every: int = Field(10, ge=1, description="Log training loss and learning rate every this many steps.")
    val_metric: str = Field("loss", description="Key of the validation dict that picks the best checkpoint.")
    val_mode: Literal["min", "max"] = Field("min", description="Whether a lower or a higher val_metric is better.")
    patience: int | None = Field(None, ge=1, description="Stop after this many validations without improvement; "
                                                         "None = never stop early.")
    min_delta: float = Field(0.0, ge=0, description="Least change of val_metric that counts as an improvement.")
    restore_best: bool = Field(True, description="Load the best validated weights into the model at the end.")
    num_workers: int = Field(0, ge=0, description="DataLoader workers.")
    device: str | None = Field(None, description="'cpu', 'cuda' or None (CUDA if available; under torchrun "
                                                 "cuda:LOCAL_RANK).")
    progress: bool = Field(True, description="Show a rich progress bar (rank 0 only).")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not 0 <= self.betas[0] < 1 or not 0 <= self.betas[1] < 1:
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self
