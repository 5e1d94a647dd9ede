"""The trainer's logs reach MLflow through liquid_shared.tracking, with their step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.mark.slow
def test_trainer_logs_go_to_the_tracked_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from liquid_finetune.tracking_callback import TrackingCallback
    from liquid_shared.tracking import start_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with start_run("finetune-test", tracking_uri=uri, local_dir=tmp_path / "local") as run:
        callback = TrackingCallback(run)
        for step, loss in ((5, 2.5), (10, 1.75)):
            callback.on_log(None, SimpleNamespace(global_step=step), None,
                            logs={"loss": loss, "learning_rate": 1e-4, "epoch": 0.5, "note": "text", "nan": float("nan")})
    history = MlflowClient(uri).get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(5, 2.5), (10, 1.75)]
    keys = set(MlflowClient(uri).get_run(run.run_id).data.metrics)
    assert {"loss", "learning_rate", "epoch"} <= keys and "note" not in keys and "nan" not in keys
