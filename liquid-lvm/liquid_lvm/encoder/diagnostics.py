"""Isotropy diagnostics of a set of embeddings (before and after training).

* ``effective_rank``: exp of the Shannon entropy of the normalised covariance eigenvalues (Roy &
  Vetterli, 2007); D for a perfectly isotropic cloud, 1 for a collapsed one.
* eigenvalue spread: ``top1_share``, the largest eigenvalue's share of the variance (1/D when
  isotropic), and the sorted spectrum itself (``spectrum``, for the plots).
* ``sigreg``: the SIGReg distance of the raw vectors (``epps_pulley_distance`` averaged over fixed
  random directions), the very quantity the regulariser minimises, and the Epps–Pulley statistic
  (N × distance; about 1.06 for a Gaussian sample of any size).
* ``mean_random_cosine``: the mean cosine of random pairs of distinct vectors (0 for an isotropic
  cloud; all-MiniLM-L6-v2's vectors share a common direction, so it is well above 0).
"""

from __future__ import annotations

import numpy as np
import torch

from liquid_lvm.encoder.sigreg import random_directions, sigreg


def spectrum(vectors: np.ndarray) -> np.ndarray:
    """Covariance eigenvalues, largest first."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    return np.sort(np.clip(np.linalg.eigvalsh(x.T @ x / max(1, len(x) - 1)), 0, None))[::-1]


def effective_rank(vectors: np.ndarray) -> float:
    ev = spectrum(vectors)
    p = ev / ev.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_random_cosine(vectors: np.ndarray, n_pairs: int = 20_000, seed: int = 0) -> float:
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), n_pairs), rng.integers(0, len(x), n_pairs)
    keep = i != j
    return float((x[i[keep]] * x[j[keep]]).sum(1).mean())


def isotropy_report(raw: np.ndarray, n_directions: int = 512, seed: int = 0) -> dict[str, float]:
    """All diagnostics of ``raw`` vectors (the head's output z before normalisation)."""
    z = torch.as_tensor(np.asarray(raw, dtype=np.float32))
    a = random_directions(z.shape[1], n_directions, seed, 0)
    dist = float(sigreg(z, a))
    ev = spectrum(raw)
    return {"effective_rank": effective_rank(raw), "dim": float(z.shape[1]), "top1_share": float(ev[0] / ev.sum()),
            "sigreg_distance": dist, "epps_pulley_statistic": dist * len(z),
            "mean_random_cosine": mean_random_cosine(raw, seed=seed),
            "mean_norm": float(np.linalg.norm(raw, axis=1).mean())}
