"""model_ablation end to end on the offline model: on the common SQuAD evaluation set (a tiny
SQuAD file), and constrained against free decoding on one tiny document (evaluation = "none"); an
LFM2 size variant whose weights are not here is skipped with the reason."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from experiments_testkit import assert_mlflow_matches_disk, run_cli, write_config


@pytest.mark.slow
def test_constrained_against_free_decoding(tiny_documents, tmp_path, mlflow_uri, in_tmp_project):
    config = write_config(tmp_path / "exp.toml", """
[model_ablation]
evaluation = "none"
stages = ["qa"]
n_boot = 300
variants = [
  {name = "baseline", etl = {qa_per_chunk = 1}},
  {name = "free_decoding", decoding = "free", etl = {qa_per_chunk = 1}},
  {name = "lfm2_2.6b", models = {qa = {model = "LiquidAI/LFM2-2.6B"}}},
]
""")
    out = tmp_path / "out"
    result = run_cli("-e", "model_ablation", "--documents", str(tiny_documents), "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "model_ablation", out)
    folder = out / "model_ablation"
    skipped = json.loads((folder / "skipped.json").read_text())
    assert set(metrics) == {"baseline", "free_decoding"}
    assert "LiquidAI/LFM2-2.6B" in skipped["lfm2_2.6b"] and "not available" in skipped["lfm2_2.6b"]

    base, free = metrics["baseline"], metrics["free_decoding"]
    assert 0.0 <= base["qa_parse_rate"] <= 1.0 and 0.0 <= free["qa_parse_rate"] <= 1.0
    assert "first_try_json_rate" in free and "first_try_json_rate" not in base
    assert 0.0 <= free["first_try_json_rate"] <= 1.0
    # the grammar guarantees JSON: constrained decoding parses on every call
    assert base["qa_parse_rate"] == 1.0 and base["qa_pairs"] >= 1
    pairs = pd.read_csv(folder / "per_qa_pair.csv")
    for name, values in metrics.items():
        rows = pairs[pairs["variant"] == name]
        assert len(rows) == values["qa_pairs"]
        if len(rows):
            assert rows["valid"].mean() == pytest.approx(values["qa_validity_rate"])
            assert rows["grounded"].mean() == pytest.approx(values["grounding_rate"])
    assert (folder / "report.md").read_text().count("lfm2_2.6b") >= 1


@pytest.mark.slow
def test_two_specs_of_one_model_are_both_counted(tiny_documents, tmp_path):
    """A variant that changes only the QA spec's decoding (``min_p``) runs QA and the judge on two
    distinct specs of the same model: two loads, and the requests of both are counted."""
    from experiments.etl_runs import cost_metrics, run_in_worker
    from experiments.etl_worker import WorkerSpec
    from liquid_shared.offline import SMOLLM2_ID

    spec = WorkerSpec(etl={"input_dir": str(tiny_documents), "stages": ["qa", "judge"], "qa_per_chunk": 1},
                      models={"qa": {"min_p": 0.0}}, seed=0)
    result = run_in_worker("min_p_0", spec, tmp_path / "run")
    stages = result["report"]["stages"]
    assert stages["qa"]["llm"] >= 1 and stages["judge"]["llm"] >= 1, stages
    assert result["model_loads"] == {SMOLLM2_ID: 2}
    # every agent run that returned an output made at least one request, on its own spec's model
    assert result["model_requests"] >= stages["qa"]["llm"] + stages["judge"]["llm"]
    assert result["prefill_batches"] >= 2
    assert cost_metrics(result)["model_loads"] == 2.0


@pytest.mark.slow
def test_every_default_variant_changes_something_against_the_baseline():
    """A default variant whose settings equal the ETL's defaults would measure the baseline twice
    (as `greedy`, temperature 0, once did: the ETL already decodes greedily)."""
    from etl_pipeline import EtlConfig
    from experiments.catalog.model_ablation import ModelAblationConfig, stage_spec

    config = ModelAblationConfig()
    defaults = EtlConfig()
    base = next(v for v in config.variants if v.name == config.baseline)
    for variant in config.variants:
        if variant is base:
            continue
        changed_etl = {k: v for k, v in variant.etl.items() if getattr(defaults, k) != v}
        changed_models = {stage for stage in variant.models
                          if stage_spec(config.profile, variant, stage) != stage_spec(config.profile, base, stage)}
        assert changed_etl or changed_models or variant.decoding != base.decoding, variant.name


def _pair(key: str, question: str, answer: str, valid: bool) -> dict:
    return {"key": key, "question": question, "answer": answer, "valid": valid}


def test_expansion_and_coverage_use_only_valid_pairs_of_their_paragraph():
    from experiments.catalog.model_ablation import answer_coverage, expanded_corpus

    corpus = {"p1": "Tides rise.", "p2": "Bees make honey."}
    pairs = [_pair("p1", "Why do tides rise?", "the Moon", True), _pair("p1", "Rejected?", "the Sun", False),
             _pair("p2", "What do bees make?", "honey", True), _pair("elsewhere", "Lost?", "x", True)]
    expanded = expanded_corpus(corpus, pairs)
    assert expanded == {"p1": "Tides rise.\nWhy do tides rise?", "p2": "Bees make honey.\nWhat do bees make?"}
    human = {"h1": {"key": "p1", "answers": ["The Sun"]}, "h2": {"key": "p2", "answers": ["honey", "sweet honey"]},
             "h3": {"key": "p1", "answers": ["the Moon itself"]}}
    coverage = answer_coverage(human, pairs)
    # the invalid pair's "the Sun" would match h1 exactly: it must not count
    assert coverage["h1"] == 0.0 and coverage["h2"] == 1.0
    assert 0.0 < coverage["h3"] < 1.0


def test_squad_evaluation_refuses_documents(tiny_documents):
    from experiments.catalog.model_ablation import ModelAblationConfig

    with pytest.raises(ValueError, match="documents is not read with evaluation = 'squad'"):
        ModelAblationConfig(documents=tiny_documents)
    assert ModelAblationConfig(documents=tiny_documents, evaluation="none").documents == tiny_documents.resolve()


@pytest.mark.slow
def test_variants_are_judged_on_one_common_set_of_human_questions(tiny_squad, tmp_path, mlflow_uri, in_tmp_project):
    """Two chunkings (160 and 24 tokens) make different chunks, yet both are scored on the same four
    human questions over the same three paragraphs, paired, against the baseline."""
    config = write_config(tmp_path / "exp.toml", f"""
[model_ablation]
squad = "{tiny_squad}"
paragraphs_per_article = 2
stages = ["qa"]
n_boot = 300
variants = [{{name = "baseline", etl = {{qa_per_chunk = 1}}}},
            {{name = "chunk_24", etl = {{qa_per_chunk = 1, max_chunk_tokens = 24}}}}]
""")
    out = tmp_path / "out"
    result = run_cli("-e", "model_ablation", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "model_ablation", out)
    folder = out / "model_ablation"
    assert set(metrics) == {"baseline", "chunk_24"}
    chunks = {name: len((folder / "etl_runs" / "run0" / name / "chunks.jsonl").read_text().splitlines())
              for name in metrics}
    assert chunks["chunk_24"] > chunks["baseline"], chunks  # the variants' corpora differ ...
    per_q = pd.read_csv(folder / "per_human_question.csv")
    for metric in ("d2q_ndcg@10", "answer_coverage_f1"):
        rows = per_q[per_q["metric"] == metric]
        ids = {name: set(rows[rows["variant"] == name]["question_id"]) for name in metrics}
        assert ids["baseline"] == ids["chunk_24"] and len(ids["baseline"]) == 4  # ... the evaluation set does not
        for name, values in metrics.items():
            assert rows[rows["variant"] == name]["score"].mean() == pytest.approx(values[metric])
            assert 0.0 <= values[metric] <= 1.0
    significance = pd.read_csv(folder / "significance.csv")
    assert set(significance["metric"]) == {"d2q_ndcg@10", "answer_coverage_f1"}
    assert set(significance[~significance["is_baseline"]]["system"]) == {"chunk_24"}
    reference = json.loads((folder / "reference.json").read_text())["no_expansion"]["d2q_ndcg@10"]
    assert 0.0 < reference <= 1.0
    report = (folder / "report.md").read_text()
    assert "descriptive, not tested" in report and "4 answerable human questions" in report
