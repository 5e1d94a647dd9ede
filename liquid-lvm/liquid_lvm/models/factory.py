"""Build a model from its config; save and load it with the config, refusing other model types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from liquid_lvm.models.base import ModelConfig, NextVectorModel
from liquid_lvm.models.recurrent import RecurrentCore
from liquid_lvm.models.ssm import MambaCore
from liquid_lvm.models.transformer import TransformerCore
from liquid_lvm.training.checkpoint import load_checkpoint


def build_model(config: ModelConfig | dict[str, Any]) -> NextVectorModel:
    config = config if isinstance(config, ModelConfig) else ModelConfig(**config)
    core = {"lstm": lambda: RecurrentCore(config, nn.LSTM), "gru": lambda: RecurrentCore(config, nn.GRU),
            "transformer": lambda: TransformerCore(config), "mamba": lambda: MambaCore(config)}[config.model_type]()
    return NextVectorModel(config, core)


def checkpoint_meta(config: ModelConfig) -> dict[str, Any]:
    return {"model_type": config.model_type, "model_config": config.model_dump(mode="json")}


def load_model(path: str | Path, model_type: str | None = None) -> NextVectorModel:
    """Model of a training checkpoint; ``model_type`` given = the checkpoint must be of that type."""
    state = load_checkpoint(path, {"model_type": model_type} if model_type else None)
    meta = state.get("meta") or {}
    if "model_config" not in meta:
        raise ValueError(f"checkpoint {path} has no model_config: not a next-chunk model checkpoint")
    model = build_model(meta["model_config"])
    model.load_state_dict(state["model"])
    return model.eval()
