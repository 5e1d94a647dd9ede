"""The one interface of the next-chunk models and their settings.

Every model maps a context ``[B, T, D]`` of chunk vectors plus a mask ``[B, T]`` (True = a real
chunk; padding may only come first, i.e. on the left) to the predicted next vector ``[B, D]``:
project D -> width, run the sequence core, read the last position, project back to D. With
``residual=True`` (default) the head predicts the change from the last context vector, so an
untrained model starts as the copy-last baseline and learning only has to add the step.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

ModelType = Literal["lstm", "gru", "transformer", "mamba"]


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_type: ModelType = Field("gru", description="lstm | gru | transformer | mamba (selective SSM).")
    dim: int = Field(384, ge=1, description="Dimension D of the chunk vectors (384 for MiniLM).")
    width: int = Field(256, ge=4, description="Hidden width of the sequence core.")
    depth: int = Field(2, ge=1, description="Layers / blocks.")
    dropout: float = Field(0.1, ge=0, lt=1)
    heads: int = Field(4, ge=1, description="Transformer attention heads (width must be divisible).")
    positions: Literal["learned", "rotary"] = Field("rotary", description="Transformer positions.")
    max_len: int = Field(512, ge=1, description="Longest context for learned positions.")
    state: int = Field(16, ge=1, description="Mamba: state size N per channel.")
    expand: int = Field(2, ge=1, description="Mamba: inner width = expand x width.")
    conv: int = Field(4, ge=1, description="Mamba: causal depthwise convolution kernel.")
    residual: bool = Field(True, description="Predict last context vector + a learned change.")


class NextVectorModel(nn.Module):
    """Shared frame: input projection, a core ``[B, T, W] -> [B, T, W]``, readout at the last position."""

    def __init__(self, config: ModelConfig, core: nn.Module):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.dim, config.width)
        self.core = core
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.dim)
        if config.residual:  # start at copy-last: the change begins at zero
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if context.dim() != 3 or context.shape[-1] != self.config.dim:
            raise ValueError(f"context must be [B, T, {self.config.dim}], got {list(context.shape)} "
                             "(mismatched embedding dimension?)")
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
        context = context * mask.unsqueeze(-1)
        h = self.core(self.inp(context), mask)
        out = self.head(self.norm(h[:, -1]))
        return context[:, -1] + out if self.config.residual else out
