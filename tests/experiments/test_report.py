"""The report command: stored runs (folders on disk, or MLflow runs) -> markdown and LaTeX tables and
figures whose numbers are the stored ones."""

from __future__ import annotations

import json

import pytest
from experiments_testkit import mlflow_runs, run_cli, write_config


@pytest.mark.slow
def test_report_from_run_folders_and_from_mlflow(hand_beir, tmp_path, mlflow_uri, in_tmp_project):
    config = write_config(tmp_path / "exp.toml", """
[rag_quality]
variants = [{name = "bm25", retriever = "bm25"}, {name = "bm25_copy", retriever = "bm25"}]
n_boot = 300
""")
    out = tmp_path / "out"
    assert run_cli("-e", "rag_quality", "--dataset", str(hand_beir), "--config", str(config), "--output", str(out),
                   "--mlflow-uri", mlflow_uri).exit_code == 0
    metrics = json.loads((out / "rag_quality" / "metrics.json").read_text())

    result = run_cli("report", "--input", str(out), "--metric", "ndcg@10", "--metric", "recall@1")
    assert result.exit_code == 0, result.output
    report = out / "report"
    table = (report / "rag_quality.md").read_text()
    assert "| bm25_copy |" in table and f"{metrics['bm25']['ndcg@10']:.3f}" in table
    assert "recall@1" in table and "map@100" not in table  # only the chosen metrics
    latex = (report / "rag_quality.tex").read_text()
    assert r"\toprule" in latex and "bm25\\_copy" in latex
    significance = (report / "rag_quality_ndcg_at_10_significance.tex").read_text()
    assert "bm25\\_copy" in significance and "Holm" in significance
    for figure in ("rag_quality_ndcg_at_10_per_query.png", "rag_quality_ndcg_at_10_differences.png"):
        assert (report / figure).stat().st_size > 1000
    assert "rag_quality" in (report / "report.md").read_text()

    parent, _ = mlflow_runs(mlflow_uri, "rag_quality")
    from_mlflow = tmp_path / "from-mlflow"
    result = run_cli("report", "--run-id", parent.info.run_id, "--mlflow-uri", mlflow_uri, "--out", str(from_mlflow))
    assert result.exit_code == 0, result.output
    from experiments.tables import metrics_table

    assert (from_mlflow / "rag_quality.md").read_text() == metrics_table(metrics)
    assert (from_mlflow / "rag_quality_ndcg_at_10_significance.md").read_text() == (
        report / "rag_quality_ndcg_at_10_significance.md").read_text()


def test_report_without_runs_names_the_folder(tmp_path):
    result = run_cli("report", "--input", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "empty" in result.output
