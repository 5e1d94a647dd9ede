"""dual_pipeline end to end: three real ETL runs (offline model) on one tiny document, each in its own
process; the costs add up, the outputs agree where they must, MLflow equals disk."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from experiments_testkit import assert_mlflow_matches_disk, run_cli, write_config


@pytest.mark.slow
def test_unified_against_separate_pipelines(tiny_documents, tmp_path, mlflow_uri, in_tmp_project):
    config = write_config(tmp_path / "exp.toml", """
[dual_pipeline]
rag_stages = ["summary"]
ft_stages = ["qa"]
qa_per_chunk = 1
""")
    out = tmp_path / "out"
    result = run_cli("-e", "dual_pipeline", "--documents", str(tiny_documents), "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "dual_pipeline", out)
    uni, rag, ft, sep = (metrics[v] for v in ("unified", "rag_only", "ft_only", "separate"))

    # one process loads the model once; two separate pipelines load it twice
    assert uni["model_loads"] == 1 and rag["model_loads"] == 1 and ft["model_loads"] == 1
    assert sep["model_loads"] == 2
    # the unified graph makes the union of the two pipelines' stage calls
    assert uni["stage_calls"] == rag["stage_calls"] + ft["stage_calls"] >= 2
    for key in ("wall_seconds", "cpu_seconds", "model_requests", "tokens"):
        assert sep[key] == pytest.approx(rag[key] + ft[key])
    assert 0 < uni["cpu_seconds"] and 0 < uni["wall_seconds"]
    assert sep["peak_rss_mb"] == max(rag["peak_rss_mb"], ft["peak_rss_mb"])
    ratio = metrics["ratio_separate_over_unified"]
    assert ratio["model_loads"] == 2.0
    assert ratio["wall_seconds"] == pytest.approx(sep["wall_seconds"] / uni["wall_seconds"])

    agreement = metrics["agreement"]
    assert agreement["chunks_identical"] == 1.0 and agreement["index_identical"] == 1.0
    for key in ("summary_agreement", "qa_pairs_jaccard"):
        assert 0.0 <= agreement[key] <= 1.0

    folder = out / "dual_pipeline"
    per_run = pd.read_csv(folder / "per_run.csv")
    assert set(per_run["variant"]) == {"unified", "rag_only", "ft_only", "separate"}
    for variant in ("unified", "rag_only", "ft_only"):
        report = json.loads((folder / "etl_runs" / "run0" / variant / "report.json").read_text())
        assert report["documents"]["done"] == 1
        assert report["run"]["config"]["temperature"] == 0.0
    assert (folder / "plots" / "costs.png").is_file()
    assert "separate / unified" in (folder / "report.md").read_text()
