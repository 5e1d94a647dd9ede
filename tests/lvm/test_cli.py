"""``python -m liquid_lvm prepare | train | evaluate`` on a tiny corpus (real MiniLM, real GRU)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from liquid_lvm.cli import app

STORY = ["Anna wakes up early.", "She makes coffee in the kitchen.", "She reads the morning news.",
         "Then she walks to the station.", "The train is late again.", "She arrives at work at nine."]


@pytest.mark.slow
def test_prepare_train_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIQUID_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": f"d{i}", "paragraphs": [f"{s} (day {i})" for s in STORY]})
                              for i in range(6)) + "\n" + json.dumps({"id": "short", "paragraphs": ["x"]}) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(docs), "-o", str(tmp_path / "c"), "--context", "2",
                              "--fractions", "0.5,0.17,0.33"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    counts = json.loads((tmp_path / "c" / "corpus.json").read_text())["counts"]
    assert sum(c["documents"] for c in counts.values()) == 7
    assert sum(c["skipped_short_documents"] for c in counts.values()) == 1  # "short" has 1 < T+1 chunks
    res = runner.invoke(app, ["train", str(tmp_path / "c"), "-o", str(tmp_path / "m"), "--width", "16",
                              "--depth", "1", "--max-steps", "4", "--eval-every", "2", "--batch-size", "8",
                              "--bank-size", "8"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "best.pt").is_file() and "gru: " in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "c"), "-c", str(tmp_path / "m" / "best.pt"),
                              "--rollout", "2", "-o", str(tmp_path / "e")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "comparison.csv").is_file() and "against the best baseline" in res.output
    assert (tmp_path / "e" / "per_query_gru_m.csv").is_file()


@pytest.mark.slow
@pytest.mark.torchrun
def test_train_under_torchrun_matches_one_process(tmp_path):
    """`torchrun --nproc_per_node=2 -m liquid_lvm train` (gloo) ends with the parameters of the
    single-process command on the same global batch, and only rank 0 logs one MLflow run."""
    import os
    import shutil
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    import torch

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": f"d{i}", "paragraphs": [f"{s} (day {i})" for s in STORY]})
                              for i in range(6)) + "\n")
    res = CliRunner().invoke(app, ["prepare", str(docs), "-o", str(tmp_path / "c"), "--context", "2",
                                   "--fractions", "0.5,0.17,0.33"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIQUID_MLFLOW_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    # MSE has no in-batch negatives, so the global-batch loss is the mean of the ranks' losses.
    args = ["train", str(tmp_path / "c"), "--width", "16", "--depth", "1", "--max-steps", "4", "--eval-every", "2",
            "--batch-size", "8", "--loss", "mse=1", "--dropout", "0"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    subprocess.run([sys.executable, "-m", "liquid_lvm", *args, "-o", str(tmp_path / "one")], check=True, env=env,
                   timeout=300, cwd=tmp_path)
    ddp = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29743", "-m", "liquid_lvm", *args, "-o",
                          str(tmp_path / "two")], env=env, timeout=400, cwd=tmp_path, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("gru: ") == 1  # rank 0 prints the summary, rank 1 stays quiet
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    for name, value in one["model"].items():
        torch.testing.assert_close(value, two["model"][name], atol=1e-5, rtol=1e-4)
    with sqlite3.connect(tmp_path / "mlruns.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 2  # one per command, none from rank 1
