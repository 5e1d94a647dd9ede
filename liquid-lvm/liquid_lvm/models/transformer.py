"""Causal pre-norm Transformer core with learned or rotary positions (RoFormer, arXiv 2104.09864)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liquid_lvm.models.base import ModelConfig


def rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of ``x [B, H, T, hd]`` by position-dependent angles."""
    t, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd))
    ang = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        w = config.width
        if w % config.heads or (w // config.heads) % 2:
            raise ValueError(f"width {w} must split into {config.heads} heads of even size")
        self.heads, self.rope, self.p = config.heads, config.positions == "rotary", config.dropout
        self.ln1, self.ln2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.qkv, self.proj = nn.Linear(w, 3 * w), nn.Linear(w, w)
        self.mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w), nn.Dropout(config.dropout))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = rotary(q), rotary(k)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, w)))
        return x + self.mlp(self.ln2(x))


class TransformerCore(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pos = nn.Embedding(config.max_len, config.width) if config.positions == "learned" else None
        self.max_len = config.max_len
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if self.pos is not None:
            if t > self.max_len:
                raise ValueError(f"context of {t} chunks is longer than max_len={self.max_len}")
            x = x + self.pos(torch.arange(t, device=x.device))
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(t, dtype=torch.bool, device=x.device)
        allowed = (causal & (mask[:, None, :] | eye)).unsqueeze(1)  # [B, 1, T, T]; a position sees itself
        for block in self.blocks:
            x = block(x, allowed)
        return x
