"""qa_generation end to end on the offline model: a tiny SQuAD file and one Wikipedia-format
article; human-referenced measures only where there are human questions; a second invocation
reuses the finished ETL runs."""

from __future__ import annotations

import json

import pytest
from experiments_testkit import run_cli, write_config


@pytest.mark.slow
def test_squad_and_wikipedia_measures_and_resume(tiny_squad, tmp_path, mlflow_uri, in_tmp_project):
    wiki = tmp_path / "articles.jsonl"
    wiki.write_text(json.dumps({"id": "w1", "title": "Glaciers", "paragraphs": [
        {"section": "", "text": "A glacier is a body of dense ice that moves under its own weight. Glaciers form where "
                                "snow builds up faster than it melts, over many years."}]}) + "\n", encoding="utf-8")
    work = tmp_path / "work"
    config = write_config(tmp_path / "exp.toml", f"""
[qa_generation]
squad = "{tiny_squad}"
paragraphs_per_article = 2
modes = ["abstractive"]
wikipedia_articles = 1
wikipedia = "{wiki}"
max_chunks_per_doc = 1
work_dir = "{work}"
n_boot = 200
""")
    out = tmp_path / "out"
    result = run_cli("-e", "qa_generation", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "qa_generation" / "metrics.json").read_text())
    assert set(metrics) == {"abstractive", "human", "wikipedia_abstractive"}
    squad_mode, wiki_mode = metrics["abstractive"], metrics["wikipedia_abstractive"]
    assert 0.0 <= squad_mode["valid_share"] <= 1.0 and squad_mode["seconds_per_chunk"] > 0
    assert 0.0 <= wiki_mode["valid_share"] <= 1.0 and wiki_mode["seconds_per_chunk"] > 0
    assert "human_answer_f1" not in wiki_mode and "valid_per_paragraph" not in wiki_mode
    assert 0.0 < metrics["human"]["ndcg@10.bm25"] <= 1.0
    details = json.loads((out / "qa_generation" / "details.json").read_text())
    assert details["wikipedia_abstractive"]["chunks"] == 1 and details["human"]["questions"] == 4
    report = (out / "qa_generation" / "report.md").read_text()
    assert "## wikipedia_abstractive" in report and "## Sample of wikipedia_abstractive pairs" in report

    again = run_cli("-e", "qa_generation", "--config", str(config), "--output", str(tmp_path / "out2"),
                    "--mlflow-uri", mlflow_uri)
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing the finished run") == 2
    assert json.loads((tmp_path / "out2" / "qa_generation" / "metrics.json").read_text()) == metrics
