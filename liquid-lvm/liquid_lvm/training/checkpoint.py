"""Checkpoints of the training loop: weights, optimiser state and the caller's metadata.

A checkpoint is one ``torch.save`` file: ``{"model": state_dict, "optimizer": ..., "scheduler": ...,
"step": int, "metrics": {...}, "meta": {...}}``. ``meta`` is whatever the caller passes
(``checkpoint_meta`` of ``train``), e.g. the model type and its settings, so that a loader can
refuse a checkpoint of another model type with a clear error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

BEST = "best.pt"
LAST = "last.pt"


def save_checkpoint(path: Path, **state: Any) -> Path:
    """Write atomically (a temporary file, then rename), so an interrupted run keeps the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint; ``expected`` entries must equal the ones of its ``meta`` (e.g. model_type)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path} is not a liquid_lvm checkpoint (no 'model' entry)")
    meta = state.get("meta") or {}
    for key, want in (expected or {}).items():
        if meta.get(key) != want:
            raise ValueError(f"checkpoint {path} has {key}={meta.get(key)!r}, expected {want!r}")
    return state
