"""A failing experiment is named with its cause; the others in the same invocation still run and are
recorded (summary.json, experiment.json, MLflow)."""

from __future__ import annotations

import json

import pytest
from experiments_testkit import mlflow_runs, run_cli, write_config


@pytest.mark.slow
def test_bad_dataset_and_bad_config_values_fail_alone(hand_beir, tmp_path, mlflow_uri, in_tmp_project):
    config = write_config(tmp_path / "exp.toml", f"""
[rag_quality]
dataset = "{hand_beir}"
variants = [{{name = "bm25", retriever = "bm25"}}]

[ft_quality]
dataset = "{tmp_path / 'no-such-run'}"

[model_ablation]
limit = "three"
""")
    out = tmp_path / "out"
    result = run_cli("--experiments", "ft_quality", "rag_quality", "model_ablation", "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 1
    assert "ft_quality" in result.output and "no-such-run" in result.output and "does not exist" in result.output
    assert "model_ablation" in result.output and "limit" in result.output

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rag_quality"]["status"] == "ok"
    assert summary["ft_quality"]["status"] == "failed" and "no-such-run" in summary["ft_quality"]["error"]
    assert summary["model_ablation"]["status"] == "failed" and "limit" in summary["model_ablation"]["error"]
    assert (out / "rag_quality" / "metrics.json").is_file()
    failed = json.loads((out / "ft_quality" / "experiment.json").read_text())
    assert failed["status"] == "failed" and "dataset" in failed["error"]
    parent, _ = mlflow_runs(mlflow_uri, "rag_quality")
    assert parent.info.status == "FINISHED"


@pytest.mark.slow
def test_a_failure_inside_an_experiment_marks_its_mlflow_run_failed(tmp_path, mlflow_uri, in_tmp_project):
    """A BEIR folder whose qrels name a document that is not in the corpus: rag_quality fails while
    loading it, with the file and line, and its MLflow run ends FAILED with the error as a tag."""
    from liquid_shared.data import write_beir

    folder = write_beir(tmp_path / "broken", {"d1": "some text"}, {"q1": "text"}, {"q1": {"d9": 1}})
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--dataset", str(folder), "--output", str(out),
                     "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 1
    assert "d9" in result.output and "test.tsv" in result.output
    parent, _ = mlflow_runs(mlflow_uri, "rag_quality")
    assert parent.info.status == "FAILED" and "d9" in parent.data.tags["error"]
    assert json.loads((out / "rag_quality" / "experiment.json").read_text())["status"] == "failed"


def test_a_bad_documents_folder_fails_both_etl_experiments_naming_it(tmp_path, mlflow_uri, in_tmp_project):
    """dual_pipeline and model_ablation share their ``documents`` setting (``experiments.documents``):
    a missing folder, or a file given as the folder, fails each of them with the path in the message."""
    missing, a_file = tmp_path / "no-such-docs", tmp_path / "notes.txt"
    a_file.write_text("not a folder\n", encoding="utf-8")
    for documents in (missing, a_file):
        out = tmp_path / f"out-{documents.name}"
        result = run_cli("-e", "dual_pipeline", "model_ablation", "--documents", str(documents),
                         "--output", str(out), "--mlflow-uri", mlflow_uri)
        assert result.exit_code == 1
        summary = json.loads((out / "summary.json").read_text())
        for name in ("dual_pipeline", "model_ablation"):
            error = summary[name]["error"]
            assert summary[name]["status"] == "failed"
            assert error.startswith("invalid config: documents:") and str(documents) in error, error
            assert "does not exist or is not a folder" in error
