"""lvm_next_chunk end to end on a tiny corpus: real MiniLM embeddings, a real GRU trained a few
steps, every baseline, paired tests, rollout, out-of-domain set; files on disk and in MLflow."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from experiments_testkit import mlflow_runs, run_cli, write_config

TOPICS = {
    "volcano": ["Magma rises from the mantle.", "Pressure builds under the crust.", "The volcano erupts with lava.",
                "Ash falls on nearby towns.", "Lava cools into new rock.", "Plants return to the slopes."],
    "bread": ["Mix flour, water and yeast.", "Knead the dough until smooth.", "Let the dough rise for an hour.",
              "Shape the loaf and score it.", "Bake the bread until golden.", "Cool it before slicing."],
    "launch": ["The rocket is fuelled overnight.", "Engineers run the final checks.", "The countdown reaches zero.",
               "Engines ignite and it lifts off.", "The boosters separate in flight.", "The satellite reaches orbit."],
    "trial": ["The suspect is arrested.", "Charges are filed in court.", "The jury is selected.",
              "Witnesses give their testimony.", "The jury deliberates for days.", "The verdict is announced."],
    "season": ["Snow melts in early spring.", "Buds open on the trees.", "Summer brings long warm days.",
               "Leaves turn red in autumn.", "The first frost arrives.", "Winter covers the fields."],
    "match": ["The teams walk onto the pitch.", "The referee blows the whistle.", "A striker scores early.",
              "The visitors equalise before half time.", "A late goal wins it.", "Fans celebrate in the stands."],
}


@pytest.mark.slow
def test_lvm_next_chunk_end_to_end(tmp_path, in_tmp_project, mlflow_uri):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": k, "paragraphs": v}) for k, v in TOPICS.items()) + "\n")
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Tides", "paragraphs": [{"context": t} for t in [
        "The Moon pulls on the oceans.", "Water bulges toward the Moon.", "High tide comes twice a day.",
        "Spring tides follow new moons.", "Neap tides are weaker."]]}]}))
    config = write_config(tmp_path / "lvm.toml", f"""
[lvm_next_chunk]
documents = "{docs}"
ood_documents = "{squad}"
context = 2
fractions = [0.5, 0.17, 0.33]
max_steps = 6
batch_size = 8
bank_size = 16
eval_every = 3
rollout = 2
n_boot = 200
models = [{{name = "gru", model_type = "gru", width = 16, depth = 1}}]
""")
    out = tmp_path / "out"
    result = run_cli("--experiments", "lvm_next_chunk", "--config", str(config), "--output", str(out),
                     "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    folder = out / "lvm_next_chunk"
    metrics = pd.read_csv(folder / "metrics.csv")
    assert set(metrics["system"]) == {"copy_last", "context_mean", "ridge", "successor", "gru"}
    assert sorted(metrics["step"].unique()) == [1, 2]
    counts = json.loads((folder / "corpus_counts.json").read_text())["splits"]
    assert metrics[metrics.step == 1]["n_queries"].iloc[0] == counts["test"]["windows"]
    comparison = pd.read_csv(folder / "comparison.csv")
    assert set(comparison["metric"]) == {"recall@10", "rr"} and comparison["is_baseline"].sum() == 2
    per_query = pd.read_csv(folder / "per_query" / "gru.csv")
    assert {"query", "step", "rank", "recall@10", "contrastive_acc", "directional"} <= set(per_query.columns)
    assert (folder / "plots" / "loss_curves.png").is_file() and (folder / "plots" / "rollout_recall10.png").is_file()
    assert (folder / "ood" / "metrics.csv").is_file()
    assert "Against the best baseline" in (folder / "report.md").read_text()
    diag = json.loads((folder / "diagnostics.json").read_text())
    assert diag["train"]["consecutive_cosine"] > diag["train"]["random_pair_cosine"]  # documents are coherent
    parent, children = mlflow_runs(mlflow_uri, "lvm_next_chunk")
    assert "gru" in children and "eval/gru" in children
