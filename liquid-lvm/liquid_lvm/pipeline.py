"""Train a next-chunk model on a prepared corpus, and fit the baselines (what the CLI and the
experiment call). Hyper-parameters are judged on the validation split only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from liquid_lvm.data.corpus import ChunkCorpus
from liquid_lvm.data.windows import WindowDataset
from liquid_lvm.evaluation.baselines import ContextMean, CopyLast, RidgeBaseline, SuccessorBaseline
from liquid_lvm.evaluation.evaluate import ModelPredictor, evaluate_predictor, window_arrays
from liquid_lvm.models.base import ModelConfig, NextVectorModel
from liquid_lvm.models.factory import build_model, checkpoint_meta
from liquid_lvm.training.config import TrainConfig
from liquid_lvm.training.loop import TrainResult, count_parameters, seed_everything, train
from liquid_lvm.training.losses import LossConfig, NextVectorLoss


def fit_model(corpus: ChunkCorpus, model_config: ModelConfig, train_config: TrainConfig,
              loss_config: LossConfig | None = None, *, checkpoint_dir: Path | None = None, run: Any = None,
              resume: bool = False) -> tuple[NextVectorModel, TrainResult]:
    """Train on the ``train`` windows; the best checkpoint is the one with the highest validation
    Recall@10 over the whole validation bank (``train_config.val_metric`` may pick another)."""
    if model_config.dim != corpus.dim:
        raise ValueError(f"model dim {model_config.dim} does not match the corpus embeddings' {corpus.dim} "
                         f"(model {corpus.model})")
    seed_everything(train_config.seed)
    model = build_model(model_config)
    loss = NextVectorLoss(loss_config or LossConfig(), torch.from_numpy(corpus.vectors),
                          torch.from_numpy(corpus.rows("train")), seed=train_config.seed)

    def validate(m):
        summary = evaluate_predictor(ModelPredictor(m), corpus, "val", n_examples=0).summary()
        return {k: v for k, v in summary.items() if k != "n_queries"}

    result = train(model, loss, WindowDataset(corpus, "train"), train_config, validate=validate,
                   checkpoint_dir=checkpoint_dir,
                   checkpoint_meta={**checkpoint_meta(model_config), "corpus_model": corpus.model,
                                    "context": corpus.context, "n_parameters": count_parameters(model)},
                   run=run, resume=resume)
    return model.eval(), result


def fit_baselines(corpus: ChunkCorpus, ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)) -> dict[str, Any]:
    """The four baselines; the ridge penalty is chosen by validation Recall@10."""
    context, mask, rows = window_arrays(corpus, "train")
    target = corpus.vectors[rows]
    best, best_score = None, -1.0
    for alpha in ridge_alphas:
        ridge = RidgeBaseline(alpha).fit(context * mask[..., None], target)
        score = evaluate_predictor(ridge, corpus, "val", n_examples=0).summary()["recall@10"]
        if score > best_score:
            best, best_score = ridge, score
    return {"copy_last": CopyLast(), "context_mean": ContextMean(), "ridge": best,
            "successor": SuccessorBaseline(corpus, "train")}
