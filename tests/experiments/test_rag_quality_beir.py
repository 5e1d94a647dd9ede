"""rag_quality on generated BEIR folders: metrics by hand, significance, MLflow against disk."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from experiments_testkit import assert_mlflow_matches_disk, run_cli, write_config

L2 = math.log2


def hand_metrics() -> dict[str, float]:
    """The five queries of ``hand_beir`` (see conftest), scored on paper."""
    per_query = {
        # q1: relevant d01 at rank 1
        "q1": {"ndcg@10": 1.0, "recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "recall@100": 1.0,
               "mrr@10": 1.0, "map@100": 1.0},
        # q2: relevant d02 (grade 2) at rank 2, under d03
        "q2": {"ndcg@10": (2 / L2(3)) / (2 / L2(2)), "recall@1": 0.0, "recall@5": 1.0, "recall@10": 1.0,
               "recall@100": 1.0, "mrr@10": 0.5, "map@100": 0.5},
        # q3: d04 at rank 1, d05 never retrieved
        "q3": {"ndcg@10": 1.0 / (1.0 + 1.0 / L2(3)), "recall@1": 0.5, "recall@5": 0.5, "recall@10": 0.5,
               "recall@100": 0.5, "mrr@10": 1.0, "map@100": 0.5},
        # q4: nothing retrieved
        "q4": dict.fromkeys(["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "map@100"], 0.0),
        # q5: d08 (grade 2) at rank 1, d07 (grade 1) at rank 2: the ideal order
        "q5": {"ndcg@10": 1.0, "recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0, "recall@100": 1.0,
               "mrr@10": 1.0, "map@100": (1 / 1 + 2 / 2) / 2},
    }
    metrics = per_query["q1"].keys()
    return {m: sum(q[m] for q in per_query.values()) / len(per_query) for m in metrics}


BM25_TWICE = """
[rag_quality]
variants = [{name = "bm25", retriever = "bm25"}, {name = "bm25_copy", retriever = "bm25"}]
n_boot = 500
"""


@pytest.mark.slow
def test_bm25_on_a_generated_beir_folder_gives_the_metrics_computed_by_hand(hand_beir, tmp_path, mlflow_uri,
                                                                             in_tmp_project):
    config = write_config(tmp_path / "exp.toml", BM25_TWICE)
    out = tmp_path / "out"
    result = run_cli("--experiments", "rag_quality", "--dataset", str(hand_beir), "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    expected = hand_metrics()
    metrics = assert_mlflow_matches_disk(mlflow_uri, "rag_quality", out)
    for name in ("bm25", "bm25_copy"):
        assert metrics[name] == pytest.approx(expected, abs=1e-12)

    folder = out / "rag_quality"
    per_query = pd.read_csv(folder / "per_query.csv", dtype={"query_id": str})
    assert sorted(per_query["query_id"].unique()) == ["q1", "q2", "q3", "q4", "q5"]
    means = per_query.groupby("variant")[list(expected)].mean()
    assert means.loc["bm25"].to_dict() == pytest.approx(metrics["bm25"])

    # identical variants: no difference is significant, every p-value is 1
    significance = pd.read_csv(folder / "significance.csv")
    copy_rows = significance[significance["system"] == "bm25_copy"]
    assert len(copy_rows) == len(expected)
    assert not copy_rows["significant"].any()
    assert (copy_rows["p_adjusted"] == 1.0).all()
    assert (copy_rows["diff"] == 0.0).all()

    report = (folder / "report.md").read_text()
    assert "bm25_copy" in report and f"{expected['ndcg@10']:.3f}" in report
    for artifact in ("report.md", "per_query.csv", "significance.csv", "plots/per_query_ndcg_at_10.png"):
        assert (folder / artifact).is_file()
    marker = json.loads((folder / "experiment.json").read_text())
    assert marker["status"] == "ok" and marker["run_id"]


@pytest.mark.slow
def test_a_planted_better_variant_is_significant_and_boosts_are_skipped_on_beir(paraphrase_beir, tmp_path, mlflow_uri,
                                                                                in_tmp_project):
    """Queries that paraphrase their document share no word with it: BM25 scores 0 on all of them,
    the dense encoder finds most. Hybrid with metadata boosts has nothing to boost on a BEIR corpus."""
    config = write_config(tmp_path / "exp.toml", """
[rag_quality]
variants = [{name = "bm25", retriever = "bm25"}, {name = "dense", retriever = "dense"},
            {name = "hybrid_boost", retriever = "hybrid", metadata_boost = true}]
metrics = ["ndcg@10", "recall@5"]
k = 10
n_boot = 500
""")
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--dataset", str(paraphrase_beir), "--config", str(config),
                     "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "rag_quality", out)
    assert metrics["bm25"]["ndcg@10"] == 0.0
    assert metrics["dense"]["ndcg@10"] > 0.5
    significance = pd.read_csv(out / "rag_quality" / "significance.csv")
    dense = significance[(significance["system"] == "dense") & (significance["metric"] == "ndcg@10")].iloc[0]
    assert bool(dense["significant"]) and dense["p_adjusted"] < 0.05 and dense["effect_size"] > 0
    assert dense["diff_ci_low"] > 0
    skipped = json.loads((out / "rag_quality" / "skipped.json").read_text())
    assert "hybrid_boost" in skipped and "no tags or categories" in skipped["hybrid_boost"]
    assert "hybrid_boost" not in metrics


@pytest.mark.slow
def test_one_query_gives_metrics_and_says_why_there_are_no_tests(tmp_path, mlflow_uri, in_tmp_project):
    from liquid_shared.data import write_beir

    corpus = {"a": "red apples", "b": "green pears", "c": "yellow bananas", "d": "purple plums"}
    folder = write_beir(tmp_path / "one", corpus, {"q": "apples"}, {"q": {"a": 1}})
    config = write_config(tmp_path / "exp.toml", BM25_TWICE)
    out = tmp_path / "out"
    result = run_cli("-e", "rag_quality", "--dataset", str(folder), "--config", str(config), "--output", str(out),
                     "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "rag_quality", out)
    assert metrics["bm25"]["ndcg@10"] == 1.0
    assert not (out / "rag_quality" / "significance.csv").exists()
    notes = json.loads((out / "rag_quality" / "experiment.json").read_text())["notes"]
    assert any("no significance tests" in n for n in notes)


def test_a_beir_export_of_an_etl_run_is_called_synthetic_and_a_plain_beir_folder_is_not(hand_beir, tmp_path):
    import shutil

    from experiments.eval_data import load_retrieval_dataset

    assert not load_retrieval_dataset(hand_beir).synthetic_labels
    export = tmp_path / "run-beir-synthetic"
    shutil.copytree(hand_beir, export)
    (export / "export.json").write_text(json.dumps({"format": "beir", "labels": "synthetic"}), encoding="utf-8")
    data = load_retrieval_dataset(export)
    assert data.synthetic_labels and "synthetic" in data.notes[0]
