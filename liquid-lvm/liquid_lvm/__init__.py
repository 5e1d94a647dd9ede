"""Latent vector models: next-chunk-vector prediction (LVM) and, in ``liquid_lvm.encoder``, an
isotropic embedding encoder. Both train with the one loop in ``liquid_lvm.training``.

Subpackages: ``data`` (ordered documents -> embedded, split, windowed corpus), ``models`` (LSTM,
GRU, Transformer, Mamba-style SSM), ``training`` (the loop, losses), ``evaluation`` (whole-bank
retrieval, baselines, paired comparisons); ``pipeline`` glues them; ``cli`` is
``python -m liquid_lvm``.
"""

from liquid_lvm.data import ChunkCorpus, load_corpus, load_documents, prepare_corpus, save_corpus
from liquid_lvm.evaluation import compare_with_baseline, evaluate_predictor
from liquid_lvm.models import ModelConfig, build_model, load_model
from liquid_lvm.pipeline import fit_baselines, fit_model
from liquid_lvm.training import TrainConfig, TrainResult, load_checkpoint, train
from liquid_lvm.training.losses import LossConfig

__all__ = ["ChunkCorpus", "LossConfig", "ModelConfig", "TrainConfig", "TrainResult", "build_model",
           "compare_with_baseline", "evaluate_predictor", "fit_baselines", "fit_model", "load_checkpoint",
           "load_corpus", "load_documents", "load_model", "prepare_corpus", "save_corpus", "train"]
