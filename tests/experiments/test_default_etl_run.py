"""With no --dataset and no default ETL run, rag_quality runs the (real) ETL first, then evaluates the
generated questions against their source chunks."""

from __future__ import annotations

import json

import pytest
from experiments_testkit import assert_mlflow_matches_disk, run_cli, write_config


@pytest.mark.slow
def test_the_default_run_is_made_when_missing(tiny_documents, tmp_path, mlflow_uri, in_tmp_project, monkeypatch):
    import experiments.eval_data as eval_data

    default_run = tmp_path / "runs" / "samples-offline"
    monkeypatch.setattr(eval_data, "default_etl_run_dir", lambda: default_run)
    config = write_config(tmp_path / "exp.toml", f"""
[rag_quality]
n_boot = 300
variants = [{{name = "bm25", retriever = "bm25"}}, {{name = "dense", retriever = "dense"}}]
default_etl = {{input_dir = "{tiny_documents}", stages = ["qa"], qa_per_chunk = 2}}
""")
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    assert (default_run / "qa_pairs.jsonl").is_file() and (default_run / "report.json").is_file()
    dataset = json.loads((out / "rag_quality" / "dataset.json").read_text())
    assert dataset["kind"] == "etl" and dataset["source"] == str(default_run)
    n_questions = sum(1 for line in (default_run / "qa_pairs.jsonl").read_text().splitlines() if line.strip())
    assert dataset["queries"] == n_questions >= 1
    metrics = assert_mlflow_matches_disk(mlflow_uri, "rag_quality", out)
    # one document of one chunk: the dense retriever ranks that chunk first for every question
    assert dataset["documents"] == 1 and metrics["dense"]["recall@1"] == 1.0
