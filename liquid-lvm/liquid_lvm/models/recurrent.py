"""LSTM and GRU cores (``torch.nn`` recurrent layers, batch first)."""

from __future__ import annotations

import torch
from torch import nn

from liquid_lvm.models.base import ModelConfig


class RecurrentCore(nn.Module):
    def __init__(self, config: ModelConfig, cell: type[nn.LSTM] | type[nn.GRU]):
        super().__init__()
        self.rnn = cell(config.width, config.width, num_layers=config.depth, batch_first=True,
                        dropout=config.dropout if config.depth > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(x))  # left padding is zeros: the state starts from nothing
        return out
