"""SIGReg: the sketched isotropic Gaussian regulariser of LeJEPA (Balestriero & LeCun, 2025).

**Epps–Pulley statistic** of a 1-D sample x_1..x_N against N(0, 1) (Epps & Pulley, 1983)::

    EP(x) = N · ∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt,      φ̂(t) = (1/N) Σ_n e^{i t x_n}

with φ̂ the empirical characteristic function and e^{−t²/2} both the characteristic function of
N(0, 1) and the weight. The integrand is even in t, so the integral over the real line is twice the
integral over t ≥ 0; like LeJEPA's reference code (``rbalestr-lab/lejepa``, class ``EppsPulley``)
we integrate over t ∈ [0, 3] with the trapezoid rule on 17 points (beyond t = 3 the weight is
below 0.012) and double it.

**Normalisation.** ``EP`` grows linearly with N for any sample that is not Gaussian, and under the
null its expectation does not depend on N: E|φ̂(t) − φ(t)|² = (1 − e^{−t²})/N, so
E[EP] = 2∫₀³ (1 − e^{−t²}) e^{−t²/2} dt ≈ 1.06 (``NULL_MEAN``). As a *loss* we use the statistic
divided by N, the weighted L2 distance between the two characteristic functions
(``epps_pulley_distance``): it does not depend on the batch size for a given distribution, is
O(1/N) (near zero) for a Gaussian sample and O(1) for a collapsed or anisotropic one. LeJEPA's
λ = 0.02 multiplies the N-scaled statistic; with our normalisation the same weight is λ·N.

**SIGReg** of a batch of embeddings Z (N × D) is the mean distance over K random unit directions
a_1..a_K (the Cramér–Wold device: all 1-D projections Gaussian ⇔ Z Gaussian), redrawn every
training step. The directions come from a generator seeded with (seed, step), so every DDP rank
draws the same ones and a run is reproducible. Under DDP the training objective all-gathers the
embeddings first (``objective.gather``), so the statistic is the one of the global batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

T_MAX = 3.0
N_POINTS = 17
NULL_MEAN = 2 * (math.sqrt(math.pi / 2) * math.erf(T_MAX / math.sqrt(2))
                 - math.sqrt(math.pi / 6) * math.erf(T_MAX * math.sqrt(1.5)))


def _trapezoid(t_max: float, n_points: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    t = torch.linspace(0.0, t_max, n_points, device=device, dtype=dtype)
    w = torch.full_like(t, t_max / (n_points - 1))
    w[0] = w[-1] = w[0] / 2
    return t, w


def epps_pulley_distance(x: Tensor, t_max: float = T_MAX, n_points: int = N_POINTS) -> Tensor:
    """Weighted L2 distance between the empirical CF of each column of ``x`` and N(0, 1)'s.

    ``x`` is (N,) or (N, K); returns a scalar or (K,). Equals ``epps_pulley_statistic / N``.
    """
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a (N,) or (N, K) sample, got shape {tuple(x.shape)}")
    if n_points < 2 or t_max <= 0:
        raise ValueError(f"need n_points >= 2 and t_max > 0, got {n_points}, {t_max}")
    squeeze = x.ndim == 1
    x = x.reshape(x.shape[0], -1)
    t, w = _trapezoid(t_max, n_points, x.device, x.dtype)
    tx = x.unsqueeze(-1) * t                                  # (N, K, T)
    gauss = torch.exp(-0.5 * t * t)
    sq_err = (torch.cos(tx).mean(0) - gauss) ** 2 + torch.sin(tx).mean(0) ** 2   # |φ̂(t) − φ(t)|², (K, T)
    dist = 2.0 * (sq_err * gauss * w).sum(-1)                  # even integrand: twice [0, t_max]
    return dist[0] if squeeze else dist


def epps_pulley_statistic(x: Tensor, t_max: float = T_MAX, n_points: int = N_POINTS) -> Tensor:
    """The Epps–Pulley statistic N · distance (null mean ``NULL_MEAN`` ≈ 1.06 for any N)."""
    return epps_pulley_distance(x, t_max, n_points) * x.shape[0]


def random_directions(dim: int, n_directions: int, seed: int, step: int,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """(dim, K) unit vectors, uniform on the sphere, the same for a given (seed, step) on every rank."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + int(step))
    a = torch.randn(dim, n_directions, generator=gen, dtype=torch.float64)
    return (a / a.norm(dim=0, keepdim=True)).to(device=device, dtype=dtype)


def sigreg(z: Tensor, directions: Tensor, t_max: float = T_MAX, n_points: int = N_POINTS) -> Tensor:
    """SIGReg loss of embeddings ``z`` (N, D): mean Epps–Pulley distance of the projections ``z @ directions``."""
    if z.ndim != 2 or directions.ndim != 2 or z.shape[1] != directions.shape[0]:
        raise ValueError(f"z must be (N, D) and directions (D, K); got {tuple(z.shape)} and {tuple(directions.shape)}")
    return epps_pulley_distance(z @ directions.to(z.dtype), t_max, n_points).mean()


class SIGReg(torch.nn.Module):
    """SIGReg with K directions redrawn every step: ``SIGReg(256, seed)(z, step)``."""

    def __init__(self, n_directions: int = 256, seed: int = 0, t_max: float = T_MAX, n_points: int = N_POINTS):
        super().__init__()
        if n_directions < 1:
            raise ValueError(f"n_directions must be at least 1, got {n_directions}")
        self.n_directions = n_directions
        self.seed = seed
        self.t_max = t_max
        self.n_points = n_points

    def forward(self, z: Tensor, step: int) -> Tensor:
        a = random_directions(z.shape[1], self.n_directions, self.seed, step, z.device, z.dtype)
        return sigreg(z, a, self.t_max, self.n_points)


def covariance_identity_penalty(z: Tensor) -> Tensor:
    """‖Cov(z) − I‖²_F / D: pushes the second moment to the identity (not SIGReg: blind to shape beyond it)."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, D) batch, got shape {tuple(z.shape)}")
    zc = z - z.mean(0, keepdim=True)
    cov = zc.T @ zc / (z.shape[0] - 1)
    eye = torch.eye(z.shape[1], device=z.device, dtype=z.dtype)
    return ((cov - eye) ** 2).sum() / z.shape[1]
