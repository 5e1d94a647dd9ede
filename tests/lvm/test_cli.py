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
