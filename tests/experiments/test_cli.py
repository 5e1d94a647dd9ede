"""The command line: help, --list, and errors that name their cause before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from experiments_testkit import run_cli, write_config

REPO = Path(__file__).resolve().parents[2]


def test_help_explains_the_options_and_the_report_command():
    proc = subprocess.run([sys.executable, str(REPO / "run_experiments.py"), "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for text in ("--experiments", "--all", "--list", "--config", "--dataset", "--mlflow-uri", "--output-dir",
                 "--seed", "--n-runs", "report", "rag_quality", "metrics.json"):
        assert text in proc.stdout, text
    report = run_cli("report", "--help")
    assert report.exit_code == 0 and "LaTeX" in report.output


def test_list_names_every_experiment_with_its_config_fields():
    result = run_cli("--list")
    assert result.exit_code == 0, result.output
    for name, field in (("rag_quality", "baseline"), ("dual_pipeline", "rag_stages"),
                        ("model_ablation", "variants"), ("ft_quality", "sets")):
        assert name in result.output and field in result.output


def test_unknown_experiment_is_named_and_nothing_runs(tmp_path):
    result = run_cli("--experiments", "rag_quality", "no_such_thing", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no_such_thing" in result.output and "known:" in result.output
    assert not (tmp_path / "out").exists()


def test_unreadable_config_file_is_named_with_the_parse_error(tmp_path):
    bad = write_config(tmp_path / "bad.toml", "[rag_quality\nk = 3\n")
    result = run_cli("-e", "rag_quality", "--config", str(bad), "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "invalid TOML" in result.output
    missing = run_cli("-e", "rag_quality", "--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "nope.toml" in missing.output and "not found" in missing.output
    unknown_table = write_config(tmp_path / "t.toml", "[rag_qualty]\nk = 3\n")
    result = run_cli("-e", "rag_quality", "--config", str(unknown_table))
    assert result.exit_code == 2 and "[rag_qualty]" in result.output


def test_no_experiment_named_is_a_usage_error(tmp_path):
    result = run_cli("--output-dir", str(tmp_path))
    assert result.exit_code == 2 and "--all" in result.output
