"""A selective state-space core in the style of Mamba (Gu & Dao, arXiv 2312.00752).

Per block: ``x, z = in_proj(LN(u))``; ``x = SiLU(causal depthwise conv(x))``; input-dependent
step ``delta = softplus(W_delta x)``, input matrix ``B = W_B x`` and output matrix ``C = W_C x``;
with ``A = -exp(A_log)`` (diagonal, per channel and state) the discretised recurrence is

    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t,      y_t = C_t . h_t + D x_t,

then ``y * SiLU(z)`` goes through ``out_proj`` back into the residual stream.

The recurrence ``h_t = a_t h_{t-1} + b_t`` is solved by ``selective_scan``: a Hillis-Steele
parallel prefix scan over the associative pairs ``(a, b)``, i.e. ceil(log2 T) vectorised steps
instead of a Python loop over time. ``selective_scan_reference`` is the step-by-step loop the
tests compare it with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from liquid_lvm.models.base import ModelConfig


def selective_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states ``h_t = a_t * h_{t-1} + b_t`` (h_{-1} = 0) over dim 1 of ``a, b [B, T, ...]``.

    Combining (a1, b1) then (a2, b2) gives (a1 a2, a2 b1 + b2); after the step with offset k every
    position holds the composition of the last 2k inputs, so log2(T) steps cover the sequence.
    """
    t = a.shape[1]
    offset = 1
    while offset < t:
        a_prev = F.pad(a[:, :-offset], (0, 0) * (a.dim() - 2) + (offset, 0), value=1.0)
        b_prev = F.pad(b[:, :-offset], (0, 0) * (b.dim() - 2) + (offset, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        offset *= 2
    return b


def selective_scan_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same recurrence, one time step after another (for tests)."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for i in range(a.shape[1]):
        h = a[:, i] * h + b[:, i]
        out.append(h)
    return torch.stack(out, dim=1)


class MambaBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        w, inner, n = config.width, config.expand * config.width, config.state
        self.inner, self.n = inner, n
        self.dt_rank = max(1, math.ceil(w / 16))
        self.ln = nn.LayerNorm(w)
        self.in_proj = nn.Linear(w, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, config.conv, groups=inner, padding=config.conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        # step sizes start between 1e-3 and 1e-1 (log-uniform), as in the Mamba paper
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, w)
        self.drop = nn.Dropout(config.dropout)
        self.scan = selective_scan

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        t = u.shape[1]
        x, z = self.in_proj(self.ln(u)).chunk(2, dim=-1)
        x = F.silu(self.conv(x.transpose(1, 2))[..., :t].transpose(1, 2))
        dt, bm, cm = self.x_proj(x).split([self.dt_rank, self.n, self.n], dim=-1)
        delta = F.softplus(self.dt_proj(dt))                         # [B, T, inner]
        a = torch.exp(delta.unsqueeze(-1) * -torch.exp(self.A_log))  # [B, T, inner, N]
        b = (delta * x).unsqueeze(-1) * bm.unsqueeze(2)              # [B, T, inner, N]
        h = self.scan(a, b)
        y = (h * cm.unsqueeze(2)).sum(-1) + self.D * x
        return u + self.drop(self.out_proj(y * F.silu(z)))


class MambaCore(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(MambaBlock(config) for _ in range(config.depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x) * mask.unsqueeze(-1)  # left padding stays zero
        return x
