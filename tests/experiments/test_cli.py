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
    for text in ("--experiments", "--all", "--list", "--config", "--dataset", "--mlflow-uri", "--output",
                 "--seed", "--n-runs", "report", "rag_quality", "metrics.json"):
        assert text in proc.stdout, text
    report = run_cli("report", "--help")
    assert report.exit_code == 0 and "LaTeX" in report.output


def test_list_explains_every_config_field_of_every_experiment():
    from experiments.registry import all_experiments

    result = run_cli("--list")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # table cells wrap; compare with the whitespace folded
    for name, exp in all_experiments().items():
        assert f"[{name}] fields" in text
        for field, info in exp.config_type.model_fields.items():
            assert field in text, (name, field)
            assert info.description, f"{name}.{field} has no description for --list"
    # list-of-item fields show their item keys and the default items by name
    assert "each of variants" in text and "each of sets" in text
    for default_item in ("free_decoding", "qa_per_chunk_1", "chunk_64_tokens", "lfm2_2.6b", "hybrid_boost",
                         "validated, rejected"):
        assert default_item in text, default_item


def test_an_option_no_selected_experiment_uses_is_a_usage_error(tmp_path):
    result = run_cli("-e", "rag_quality", "--n-runs", "3", "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "--n-runs is not used by rag_quality" in result.output and "dual_pipeline, model_ablation" in result.output
    assert not (tmp_path / "out").exists()
    result = run_cli("-e", "dual_pipeline", "--dataset", str(tmp_path), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--dataset is not used by dual_pipeline" in result.output


def test_unknown_experiment_is_named_and_nothing_runs(tmp_path):
    result = run_cli("--experiments", "rag_quality", "no_such_thing", "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no_such_thing" in result.output and "known:" in result.output
    assert not (tmp_path / "out").exists()


def test_unreadable_config_file_is_named_with_the_parse_error(tmp_path):
    bad = write_config(tmp_path / "bad.toml", "[rag_quality\nk = 3\n")
    result = run_cli("-e", "rag_quality", "--config", str(bad), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "invalid TOML" in result.output
    missing = run_cli("-e", "rag_quality", "--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "nope.toml" in missing.output and "not found" in missing.output
    unknown_table = write_config(tmp_path / "t.toml", "[rag_qualty]\nk = 3\n")
    result = run_cli("-e", "rag_quality", "--config", str(unknown_table))
    assert result.exit_code == 2 and "[rag_qualty]" in result.output


def test_no_experiment_named_is_a_usage_error(tmp_path):
    result = run_cli("--output", str(tmp_path))
    assert result.exit_code == 2 and "--all" in result.output


def test_the_guide_documents_every_option_and_every_config_field():
    """docs/experiments.md: each option of `run` and `report`, and each config field of each experiment
    (and of its variants / sets) in that experiment's section."""
    import click
    import typer.main

    from experiments.cli import _item_type, app
    from experiments.registry import all_experiments

    guide = (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for command in ("run", "report"):
        for param in group.commands[command].params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    assert f"`{flag}" in guide, (command, flag)
    sections = {part.split("\n", 1)[0].strip(): part for part in guide.split("\n## ")[1:]}
    for name, exp in all_experiments().items():
        section = sections[name]
        for field, info in exp.config_type.model_fields.items():
            assert f"| `{field}` |" in section, (name, field)
            item = _item_type(info)
            for item_field in item.model_fields if item else ():
                assert f"| `{item_field}` |" in section, (name, field, item_field)


def test_an_old_option_name_still_works_with_a_deprecation_line(tmp_path):
    """`--output-dir` was run's output folder before `-o/--output`: accepted for one release, with a warning."""
    result = run_cli("--output-dir", str(tmp_path))  # still a usage error (no experiment), but parsed
    assert result.exit_code == 2 and "--all" in result.output
    assert "--output-dir is deprecated" in result.output and "use --output" in result.output
