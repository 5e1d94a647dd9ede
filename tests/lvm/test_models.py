"""Models: the vectorised scan equals the loop; each model overfits and beats copy-last on a
process where the next vector is a known function of the context."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lvm_testkit import rotation_corpus

from liquid_lvm.data import WindowDataset
from liquid_lvm.evaluation import CopyLast, ModelPredictor, evaluate_predictor
from liquid_lvm.models import (
    ModelConfig,
    build_model,
    checkpoint_meta,
    load_model,
    selective_scan,
    selective_scan_reference,
)
from liquid_lvm.training import TrainConfig, count_parameters, save_checkpoint, train
from liquid_lvm.training.losses import LossConfig, NextVectorLoss, infonce_loss

MODELS = ("lstm", "gru", "transformer", "mamba")


def test_vectorised_scan_equals_step_by_step_reference():
    g = torch.Generator().manual_seed(0)
    for t in (1, 2, 7, 16, 33):
        a = torch.rand(3, t, 5, 4, generator=g, dtype=torch.float64)
        b = torch.randn(3, t, 5, 4, generator=g, dtype=torch.float64)
        torch.testing.assert_close(selective_scan(a, b), selective_scan_reference(a, b), atol=1e-5, rtol=0)
    a32, b32 = torch.rand(2, 24, 8, 16, generator=g), torch.randn(2, 24, 8, 16, generator=g)
    assert (selective_scan(a32, b32) - selective_scan_reference(a32, b32)).abs().max() < 1e-5


def test_mamba_block_output_equals_the_loop_scan():
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_type="mamba", dim=8, width=16, depth=2, dropout=0.0, residual=False))
    x = torch.randn(4, 9, 8)
    fast = model(x)
    for block in model.core.blocks:
        block.scan = selective_scan_reference
    torch.testing.assert_close(fast, model(x), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODELS)
def test_model_overfits_and_beats_copy_last(model_type):
    corpus = rotation_corpus(n_docs=20, length=10, dim=16, context=4)
    torch.manual_seed(0)
    config = ModelConfig(model_type=model_type, dim=16, width=32, depth=1, dropout=0.0, heads=2)
    model = build_model(config)
    assert count_parameters(model) > 0
    loss = NextVectorLoss(LossConfig(weights={"mse": 1.0}))
    result = train(model, loss, WindowDataset(corpus, "train"),
                   TrainConfig(epochs=400, max_steps=400, batch_size=32, lr=1e-2, warmup_steps=10, weight_decay=0.0,
                               progress=False, log_every=50, grad_clip=1.0))
    assert result.history[-1]["train_loss"] < 2e-3  # copy-last's MSE on this process is ~0.12
    ours = evaluate_predictor(ModelPredictor(model), corpus, "test").summary()
    copy = evaluate_predictor(CopyLast(), corpus, "test").summary()
    assert ours["cosine"] > 0.95 > copy["cosine"] + 0.3
    assert ours["recall@1"] > copy["recall@1"]


def test_bad_model_input_and_checkpoint_type(tmp_path):
    model = build_model(ModelConfig(model_type="gru", dim=16, width=8))
    with pytest.raises(ValueError, match=r"context must be \[B, T, 16\].*mismatched embedding dimension"):
        model(torch.zeros(2, 3, 384))
    path = save_checkpoint(tmp_path / "gru.pt", model=model.state_dict(), meta=checkpoint_meta(model.config))
    assert load_model(path, "gru").config.model_type == "gru"
    with pytest.raises(ValueError, match="model_type='gru', expected 'mamba'"):
        load_model(path, "mamba")


def test_infonce_prefers_the_true_target_and_masks_duplicates():
    target = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    good = infonce_loss(target.clone(), target)
    bad = infonce_loss(target.roll(1, 0), target)
    assert good < bad
    rows = torch.arange(6)
    bank = target.clone()  # the bank holds each query's own target: masked, it is no negative of itself
    masked = infonce_loss(target, target, bank=bank, target_rows=rows, bank_rows=rows)
    unmasked = infonce_loss(target, target, bank=bank)
    assert good < masked < unmasked
    assert np.isfinite(float(good))
