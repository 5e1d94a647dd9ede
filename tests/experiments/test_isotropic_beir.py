"""isotropic_beir end to end on a tiny random base: every head variant (BM25 hard negatives
included) and a partly unfrozen encoder against the untrained base, on a tiny BEIR folder and a tiny SQuAD file, files on disk
matching MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from experiments_testkit import assert_mlflow_matches_disk, run_cli, write_config

sys.path.insert(0, str(Path(__file__).parents[1] / "lvm" / "encoder"))
from encoder_helpers import DOCS, QUERIES, make_tiny_base  # noqa: E402


@pytest.fixture(scope="module")
def tiny_beir_with_train(tmp_path_factory) -> Path:
    from liquid_shared.data import write_beir

    folder = tmp_path_factory.mktemp("beir")
    corpus = {f"d{i}": text for i, text in enumerate(DOCS)}
    test_queries = {"t0": "honey production by bees", "t1": "blue colour of the sky", "t2": "what makes tides"}
    queries = {**{f"q{i}": q for i, q in enumerate(QUERIES)}, **test_queries}
    write_beir(folder, corpus, queries, {f"q{i}": {f"d{i}": 1} for i in range(len(QUERIES))}, split="train")
    write_beir(folder, corpus, queries, {"t0": {"d0": 1}, "t1": {"d1": 1}, "t2": {"d2": 1}}, split="test")
    return folder


@pytest.mark.slow
def test_every_head_against_the_untrained_base(tiny_beir_with_train, tiny_squad, tmp_path, mlflow_uri, in_tmp_project):
    base = make_tiny_base(tmp_path / "base")
    config = write_config(tmp_path / "exp.toml", f"""
[isotropic_beir]
beir = "{tiny_beir_with_train}"
squad = "{tiny_squad}"
epochs = 2
base = "{base}"
unfrozen_layers = 1
""")
    out = tmp_path / "out"
    result = run_cli("-e", "isotropic_beir", "--config", str(config), "--output", str(out), "--mlflow-uri", mlflow_uri)
    assert result.exit_code == 0, result.output
    metrics = assert_mlflow_matches_disk(mlflow_uri, "isotropic_beir", out)
    heads = {"contrastive", "sigreg_l0.02", "sigreg_l0.1", "sigreg_l0.5", "covariance_l0.1", "contrastive_bm25neg"}
    assert set(metrics) == {"base", "human:last1_contrastive"} | {f"human:{h}" for h in heads}
    for name, row in metrics.items():
        assert 0.0 <= row["scifact.ndcg@10"] <= 1.0 and 0.0 <= row["squad.ndcg@10"] <= 1.0
        assert row["synthetic_labels"] == 0.0 and row["isotropy.effective_rank"] > 0
        assert ("train.seconds_per_epoch" in row) == (name != "base")
        assert ("train.val_ndcg@10" in row) == (name not in ("base", "human:last1_contrastive"))
    folder = out / "isotropic_beir"
    sig = pd.read_csv(folder / "significance_scifact.csv")
    assert set(sig["system"]) == set(metrics) and sig["n"].eq(3).all()  # the three test queries, paired
    assert (folder / "plots" / "spectra.png").is_file()
    report = (folder / "report.md").read_text()
    assert "Against the untrained base" in report and "BM25 hard negatives" in report
