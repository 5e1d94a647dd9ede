"""ft_quality end to end with the real offline reader model: schema validity, grounding and diversity
against values worked out by hand, answerability scored, sets compared, MLflow equal to disk."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from experiments_testkit import ETL_QA, assert_mlflow_matches_disk, run_cli, write_config


@pytest.mark.slow
def test_validated_rejected_and_a_broken_file(etl_like_run, tmp_path, mlflow_uri, in_tmp_project):
    good = json.loads((etl_like_run / "ft" / "samples.jsonl").read_text().splitlines()[0])
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": good["messages"]}) + "\n"
                      + json.dumps({"messages": good["messages"][:2]}) + "\n{oops\n")
    config = write_config(tmp_path / "exp.toml", f"""
[ft_quality]
dataset = "{etl_like_run}"
n_boot = 300
sets = [{{name = "validated", select = "ft"}}, {{name = "rejected", select = "invalid"}},
        {{name = "broken", path = "{broken}"}}]
""")
    out = tmp_path / "out"
    result = run_cli("-e", "ft_quality", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "ft_quality", out)

    n_valid = sum(1 for *_, valid in ETL_QA if valid)
    assert metrics["validated"]["n_items"] == n_valid and metrics["rejected"]["n_items"] == len(ETL_QA) - n_valid
    assert metrics["validated"]["schema_validity"] == 1.0
    assert metrics["broken"]["schema_validity"] == pytest.approx(1 / 3)
    # every validated answer is copied from its chunk; of the rejected ones only "a degreaser" is
    assert metrics["validated"]["grounding_rate"] == 1.0
    assert metrics["rejected"]["grounding_rate"] == pytest.approx(1 / 3)
    # no question repeats another
    assert metrics["validated"]["near_duplicate_rate"] == 0.0
    questions = [q for _, q, _, valid in ETL_QA if valid]
    tokens = [w.strip("?").lower() for q in questions for w in q.split()]
    assert metrics["validated"]["distinct_1"] == pytest.approx(len(set(tokens)) / len(tokens))
    # the reader answered every schema-valid item, and EM <= F1 <= 1
    assert metrics["validated"]["reader_items"] == n_valid and metrics["broken"]["reader_items"] == 1
    for values in metrics.values():
        assert 0.0 <= values["answer_em"] <= values["answer_f1"] <= 1.0

    folder = out / "ft_quality"
    per_item = pd.read_csv(folder / "per_item.csv")
    for name, values in metrics.items():
        rows = per_item[per_item["set"] == name]
        assert rows["answer_f1"].dropna().mean() == pytest.approx(values["answer_f1"])
        assert rows["grounding"].mean() == pytest.approx(values["grounding_mean"])
    # the ETL's own filters are descriptive: only answerability is tested across sets
    significance = pd.read_csv(folder / "significance.csv")
    assert set(significance["metric"]) == {"answer_em", "answer_f1"}
    report = (folder / "report.md").read_text()
    assert "descriptive only, not tested" in report and "validated" in report
    # this fake run's report.json names no models, so whether the reader wrote the pairs is unknown
    # (NaN in the run, null in metrics.json)
    assert all(v["reader_is_generator"] is None or math.isnan(v["reader_is_generator"]) for v in metrics.values())
    assert "it is unknown whether" in report


def test_reader_is_generator_read_from_the_run_report(tmp_path):
    from experiments.catalog.ft_quality import generator_models

    run = tmp_path / "run"
    run.mkdir()
    assert generator_models(run) is None  # no report.json
    (run / "report.json").write_text(json.dumps({"run": {"settings": {"models": {
        "qa": {"spec": {"model": "offline:smollm2-135m-instruct"}},
        "validation": {"spec": {"model": "LiquidAI/LFM2-700M"}},
        "summary": {"spec": {"model": "LiquidAI/LFM2-1.2B"}}}}}}))
    assert generator_models(run) == {"offline:smollm2-135m-instruct", "LiquidAI/LFM2-700M"}
    (run / "report.json").write_text("{not json")
    assert generator_models(run) is None
