"""Whole-bank retrieval equals brute force; baselines, rollout, comparison and diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from lvm_testkit import rotation_corpus

from liquid_lvm.evaluation import (
    Bank,
    ContextMean,
    CopyLast,
    SuccessorBaseline,
    coherence_diagnostics,
    compare_with_baseline,
    evaluate_predictor,
)
from liquid_lvm.pipeline import fit_baselines


def test_bank_ranks_equal_brute_force():
    rng = np.random.default_rng(0)
    bank_vectors = rng.normal(size=(300, 12)).astype(np.float32)
    preds = rng.normal(size=(50, 12)).astype(np.float32)
    targets = rng.integers(0, 300, size=50)
    ranks = Bank(bank_vectors).ranks(preds, targets)
    unit = bank_vectors / np.linalg.norm(bank_vectors, axis=1, keepdims=True)
    scores = (preds / np.linalg.norm(preds, axis=1, keepdims=True)) @ unit.T
    for i in range(50):
        order = np.argsort(-scores[i])
        brute_rank = int(np.where(order == targets[i])[0][0]) + 1
        assert ranks.rank[i] == brute_rank
        farther = (scores[i] < scores[i, targets[i]]).sum() / 299  # LCM: other vectors farther than the truth
        assert ranks.contrastive_accuracy()[i] == pytest.approx(farther)
        assert ranks.top[i, 0] == order[0]
    brute_recall10 = np.mean([(np.argsort(-scores[i])[:10] == targets[i]).any() for i in range(50)])
    assert ranks.recall(10).mean() == pytest.approx(brute_recall10)
    assert ranks.reciprocal_rank().mean() == pytest.approx(np.mean(1 / ranks.rank))


def test_baselines_rollout_and_comparison():
    corpus = rotation_corpus(n_docs=30, length=12, dim=16, context=4, noise=0.05)
    systems = fit_baselines(corpus)
    results = {n: evaluate_predictor(p, corpus, "test", rollout=3) for n, p in systems.items()}
    ridge, copy = results["ridge"].summary(), results["copy_last"].summary()
    assert ridge["cosine"] > 0.9 and copy["cosine"] < 0.6  # the process is linear in the last vector
    assert ridge["recall@10"] > copy["recall@10"]
    assert ridge["directional"] > 0.9
    # rollout: step j scores only windows whose document still has chunk s+T+j-1
    per = results["copy_last"].per_query
    n_docs_test = len(corpus.splits["test"])
    assert [int((per["step"] == s).sum()) for s in (1, 2, 3)] == [n_docs_test * k for k in (8, 7, 6)]
    assert results["ridge"].summary(3)["cosine"] < ridge["cosine"]  # errors compound
    table = compare_with_baseline(results, "copy_last", n_boot=200)
    row = table.set_index("system").loc["ridge"]
    assert row["diff"] > 0 and row["significant"] and bool(table.set_index("system").loc["copy_last", "is_baseline"])
    assert results["ridge"].decoded.shape[0] == 5


def test_successor_predicts_the_next_training_chunk():
    corpus = rotation_corpus(n_docs=10, length=6, dim=8, context=2)
    succ = SuccessorBaseline(corpus, "train")
    row = corpus.rows("train")[2]
    ctx = corpus.vectors[None, row - 1:row + 1]
    np.testing.assert_array_equal(succ(ctx, np.ones((1, 2), bool))[0], corpus.vectors[row + 1])
    mean = ContextMean()(ctx, np.ones((1, 2), bool))
    np.testing.assert_allclose(mean[0], corpus.vectors[row - 1:row + 1].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(CopyLast()(ctx, None)[0], corpus.vectors[row])


def test_coherence_diagnostics_see_sequential_structure():
    corpus = rotation_corpus(n_docs=20, length=10, dim=4, context=2)
    diag = coherence_diagnostics(corpus)
    assert set(diag) == {"train", "val", "test"}
    rot_cos = diag["train"]["consecutive_cosine"]  # constant for a fixed rotation
    assert abs(diag["train"]["narrative_delta"]) < 1e-5  # a rotation is symmetric in time
    assert np.isfinite(rot_cos) and np.isfinite(diag["test"]["random_pair_cosine"])
