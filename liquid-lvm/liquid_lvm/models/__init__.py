"""Next-chunk models: context ``[B, T, D]`` + mask -> next vector ``[B, D]`` (LSTM, GRU,
causal Transformer, Mamba-style selective SSM)."""

from liquid_lvm.models.base import ModelConfig, ModelType, NextVectorModel
from liquid_lvm.models.factory import build_model, checkpoint_meta, load_model
from liquid_lvm.models.ssm import selective_scan, selective_scan_reference

__all__ = ["ModelConfig", "ModelType", "NextVectorModel", "build_model", "checkpoint_meta", "load_model",
           "selective_scan", "selective_scan_reference"]
