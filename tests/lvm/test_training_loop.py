"""The shared training loop: schedule, overfitting, best checkpoint, early stopping, resume, DDP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from liquid_lvm.training import TrainConfig, load_checkpoint, param_groups, train, warmup_cosine

HERE = Path(__file__).parent


def _regression(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    w = torch.randn(5, 2, generator=g)
    return TensorDataset(x, x @ w)


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def test_warmup_then_cosine_to_floor():
    values = [warmup_cosine(s, 100, 10, 0.1) for s in range(120)]
    assert values[0] < values[5] < values[9] < 1.0 + 1e-12  # rising warm-up
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(values[10:], values[11:], strict=False))  # monotone decay
    assert values[100] == pytest.approx(0.1) and values[119] == pytest.approx(0.1)


def test_param_groups_decay_only_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.dim() for p in decay["params"]] == [2]
    assert sorted(p.dim() for p in no_decay["params"]) == [1, 1, 1]
    assert no_decay["weight_decay"] == 0.0


def test_overfits_and_keeps_best_checkpoint(tmp_path):
    data = _regression()
    x, y = data.tensors
    model = nn.Linear(5, 2)
    calls = []

    def validate(m):
        loss = float(nn.functional.mse_loss(m(x), y))
        calls.append(loss)
        return {"loss": loss}

    config = TrainConfig(epochs=60, batch_size=32, lr=5e-2, warmup_steps=5, eval_every=20, progress=False,
                         weight_decay=0.0)
    result = train(model, _mse, data, config, validate=validate, checkpoint_dir=tmp_path,
                   checkpoint_meta={"model_type": "linear"})
    assert result.steps == 60 * 3
    assert result.best_metric == min(calls) and result.best_metric < 1e-3
    state = load_checkpoint(tmp_path / "best.pt", {"model_type": "linear"})
    assert state["step"] == result.best_step
    restored = nn.Linear(5, 2)
    restored.load_state_dict(state["model"])
    with torch.no_grad():
        restored_loss = float(nn.functional.mse_loss(restored(x), y))
    assert restored_loss == pytest.approx(result.best_metric, rel=1e-5)
    with pytest.raises(ValueError, match="model_type='linear', expected 'gru'"):
        load_checkpoint(tmp_path / "best.pt", {"model_type": "gru"})


def test_early_stopping_stops_when_validation_stalls():
    data = _regression()
    flat = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    config = TrainConfig(epochs=50, batch_size=32, eval_every=3, patience=2, progress=False)
    result = train(nn.Linear(5, 2), _mse, data, config, validate=lambda m: {"loss": next(flat)})
    assert result.stopped_early
    assert result.best_metric == 0.5 and result.best_step == 6
    assert result.steps == 12  # validations at 3, 6 (best), 9, 12: two without improvement


def test_resume_continues_from_last_checkpoint(tmp_path):
    data = _regression()  # 96 rows, 3 batches per epoch
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, progress=False, eval_every=3, restore_best=False)
    torch.manual_seed(0)
    straight = nn.Linear(5, 2)
    train(straight, _mse, data, config, validate=lambda m: {"loss": 0.0})

    def crash_at_step_9():
        count = iter(range(10))

        def validate(m):
            if next(count) == 2:
                raise RuntimeError("interrupted")
            return {"loss": 0.0}
        return validate

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        train(nn.Linear(5, 2), _mse, data, config, validate=crash_at_step_9(), checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6
    resumed = nn.Linear(5, 2)  # fresh weights: all state comes from last.pt
    result = train(resumed, _mse, data, config, validate=lambda m: {"loss": 0.0}, checkpoint_dir=tmp_path,
                   resume=True)
    assert result.steps == 12
    for ps, pr in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(ps, pr)


def test_mlflow_run_gets_params_curves_and_checkpoint(tmp_path, monkeypatch):
    from liquid_shared.tracking import start_run

    monkeypatch.setenv("LIQUID_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    data = _regression()
    config = TrainConfig(epochs=2, batch_size=32, log_every=1, eval_every=3, progress=False)
    with start_run("lvm_test", run_name="loop", local_dir=tmp_path / "run") as run:
        train(nn.Linear(5, 2), _mse, data, config, validate=lambda m: {"loss": 1.0}, checkpoint_dir=tmp_path / "c",
              run=run)
    assert run.mlflow_ok
    assert run.params["train.lr"] == "0.001" and run.params["n_parameters"] == "12"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in line for line in lines) == 6
    assert "checkpoints/best.pt" in " ".join(run.artifacts)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="empty"):
        train(nn.Linear(5, 2), _mse, TensorDataset(torch.zeros(0, 5), torch.zeros(0, 2)),
              TrainConfig(progress=False))
    with pytest.raises(KeyError, match="val_metric 'recall@10'"):
        train(nn.Linear(5, 2), _mse, _regression(), TrainConfig(progress=False, epochs=1, val_metric="recall@10"),
              validate=lambda m: {"loss": 1.0})


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single.pt"
    double = tmp_path / "ddp.pt"
    subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(single)], check=True, env=env, timeout=120)
    subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29731", str(HERE / "ddp_worker.py"), str(double)],
                   check=True, env=env, timeout=240)
    a, b = torch.load(single), torch.load(double)
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["steps"] == b["steps"] == 8
    moved = False
    torch.manual_seed(0)
    init = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).state_dict()
    for name, value in a["params"].items():
        torch.testing.assert_close(value, b["params"][name], atol=1e-5, rtol=1e-4)
        moved |= not torch.allclose(value, init[name])
    assert moved
