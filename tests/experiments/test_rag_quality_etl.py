"""rag_quality on an ETL run: each generated question's one relevant document is its source chunk;
metadata boosts use the chunks' tags and categories; with no --dataset the default ETL run is used."""

from __future__ import annotations

import json

import pytest
from experiments_testkit import ETL_QA, assert_mlflow_matches_disk, run_cli, write_config

CONFIG = """
[rag_quality]
n_boot = 500
"""


@pytest.mark.slow
def test_questions_of_an_etl_run_are_queries_for_their_source_chunks(etl_like_run, tmp_path, mlflow_uri,
                                                                      in_tmp_project):
    config = write_config(tmp_path / "exp.toml", CONFIG)
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--dataset", str(etl_like_run), "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "rag_quality", out)
    folder = out / "rag_quality"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["kind"] == "etl" and dataset["queries"] == len(ETL_QA) and dataset["documents"] == 6
    # "Which planet has rings?" shares no word with any chunk: BM25 cannot retrieve its chunk; every
    # other question shares words with its source chunk, so BM25 retrieves it within 100.
    assert metrics["bm25"]["recall@100"] == pytest.approx(6 / 7)
    # dense ranks all six chunks for every question
    assert metrics["dense"]["recall@100"] == 1.0
    # chunk metadata exists, so the boosted variant runs; three questions name a tag of the corpus
    # ("tides" twice, "bicycle" once)
    assert "hybrid_boost" in metrics
    assert not (folder / "skipped.json").exists()
    notes = json.loads((folder / "experiment.json").read_text())["notes"]
    assert "metadata boosts applied to 3 query rankings" in notes
    # the judgments are synthetic (question -> its source chunk), and every output says so
    from experiments_testkit import mlflow_runs

    from experiments.catalog.rag_quality import SYNTHETIC_FLAG, SYNTHETIC_JUDGMENTS
    assert SYNTHETIC_JUDGMENTS in notes and dataset["judgments"] == "synthetic"
    assert SYNTHETIC_JUDGMENTS in (folder / "report.md").read_text()
    assert all(m[SYNTHETIC_FLAG] == 1.0 for m in json.loads((folder / "metrics.json").read_text()).values())
    parent, _ = mlflow_runs(mlflow_uri, "rag_quality")
    assert parent.data.tags["judgments"] == "synthetic"


def test_only_valid_questions_and_the_default_run(etl_like_run, tmp_path, mlflow_uri, in_tmp_project, monkeypatch):
    """With no --dataset, the default ETL run (here: an existing one) is the dataset."""
    import experiments.eval_data as eval_data

    monkeypatch.setattr(eval_data, "default_etl_run_dir", lambda: etl_like_run)
    config = write_config(tmp_path / "exp.toml", CONFIG + """questions = "valid"
variants = [{name = "bm25", retriever = "bm25"}]
""")
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    dataset = json.loads((out / "rag_quality" / "dataset.json").read_text())
    assert dataset["source"] == str(etl_like_run)
    assert dataset["queries"] == sum(1 for *_, valid in ETL_QA if valid)
