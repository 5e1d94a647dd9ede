"""The encoder model, its save format, its data sources, and cached vs through-the-base training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from encoder_helpers import DOCS, QUERIES, make_tiny_base

from liquid_lvm.encoder.model import EncoderModelError, IsotropicGaussianEncoder
from liquid_lvm.encoder.objective import ObjectiveConfig
from liquid_lvm.encoder.pairs import (
    PairDataError,
    PairSet,
    pairs_from_beir,
    pairs_from_etl_run,
    pairs_from_jsonl,
    with_bm25_negatives,
)
from liquid_lvm.encoder.training import (
    EncoderTrainConfig,
    base_vectors,
    head_vectors,
    train_encoder,
)
from liquid_lvm.training import TrainConfig


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return make_tiny_base(tmp_path_factory.mktemp("tiny_base"))


def _pairs() -> PairSet:
    return PairSet("toy", list(QUERIES), list(DOCS), [f"d{i}" for i in range(len(DOCS))],
                   [(i, i, -1) for i in range(len(QUERIES))])


def test_saved_folder_loads_with_plain_sentence_transformers_and_gives_the_same_vectors(tiny_base, tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = IsotropicGaussianEncoder(str(tiny_base), out_dim=16, seed=1)
    with torch.no_grad():
        enc.head.linear.weight.add_(0.1 * torch.randn_like(enc.head.linear.weight))
    path = enc.save(tmp_path / "enc")
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize", "Dense", "Normalize"]
    plain = SentenceTransformer(str(path), device="cpu").encode(DOCS, convert_to_numpy=True)
    ours = enc.encode(DOCS)
    assert plain.shape == (len(DOCS), 16)
    np.testing.assert_allclose(plain, ours, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-5)


def test_square_head_starts_with_the_base_vectors(tiny_base):
    from sentence_transformers import SentenceTransformer

    enc = IsotropicGaussianEncoder(str(tiny_base))
    base = SentenceTransformer(str(tiny_base), device="cpu").encode(DOCS, convert_to_numpy=True)
    np.testing.assert_allclose(enc.encode(DOCS), base, atol=1e-5)
    raw = enc.encode(DOCS, normalize=False)  # sqrt(D) * unit vectors: coordinates of variance ~1
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), np.sqrt(32), rtol=1e-4)


def test_freeze_modes_and_learning_rate_groups(tiny_base):
    enc = IsotropicGaussianEncoder(str(tiny_base), out_dim=8)
    head_n = sum(p.numel() for p in enc.head.parameters())
    trainable = lambda: sum(p.numel() for p in enc.parameters() if p.requires_grad)  # noqa: E731
    assert trainable() == head_n
    enc.set_trainable("last_n", 1)
    layer_n = sum(p.numel() for p in enc.transformer.auto_model.encoder.layer[-1].parameters())
    assert trainable() == head_n + layer_n
    enc.set_trainable("full")
    assert trainable() == sum(p.numel() for p in enc.parameters())
    groups = enc.optimizer_groups(0.01, lr_base=1e-5, lr_head=1e-3)
    assert {g["name"]: g["lr"] for g in groups}["head_decay"] == 1e-3
    assert {g["name"]: g["lr"] for g in groups}["base_decay"] == 1e-5
    assert sum(p.numel() for g in groups for p in g["params"]) == trainable()
    with pytest.raises(EncoderModelError, match="n_unfrozen must be in 1..2"):
        enc.set_trainable("last_n", 5)


def test_a_base_model_that_is_not_available_offline_is_named(tmp_path):
    with pytest.raises(EncoderModelError, match="no-such-org/no-such-model.*not available offline"):
        IsotropicGaussianEncoder("no-such-org/no-such-model")


@pytest.mark.parametrize("regulariser", ["sigreg", "covariance"])
def test_cached_training_gives_the_same_head_as_training_through_the_frozen_base(tiny_base, regulariser):
    pairs = _pairs()
    config = TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup_steps=1, progress=False, device="cpu", seed=0)
    enc_cfg = EncoderTrainConfig(lr_head=1e-2, objective=ObjectiveConfig(regulariser=regulariser, lam=0.3,
                                                                        n_directions=32))
    heads = {}
    for cached in (True, False):
        enc = IsotropicGaussianEncoder(str(tiny_base), out_dim=16, seed=0)
        start = enc.head.linear.weight.detach().clone()
        cache = (base_vectors(enc, pairs.queries, use_cache=False), base_vectors(enc, pairs.docs, use_cache=False))
        result = train_encoder(enc, pairs, config, enc_cfg.model_copy(update={"cached": cached}),
                               cache=cache if cached else None)
        assert result.cached is cached and result.loop.steps == 6
        heads[cached] = enc.head.linear.weight.detach().clone()
    assert not torch.allclose(heads[True], start, atol=1e-3)  # it trained
    torch.testing.assert_close(heads[True], heads[False], atol=2e-5, rtol=1e-4)


def test_training_improves_retrieval_of_held_out_vectors(tiny_base):
    """The head trained on toy pairs ranks queries' own documents first more often than at the start."""
    pairs = _pairs()
    enc = IsotropicGaussianEncoder(str(tiny_base), out_dim=32, seed=0)
    qv, dv = base_vectors(enc, pairs.queries, use_cache=False), base_vectors(enc, pairs.docs, use_cache=False)

    def hits() -> int:
        return int(((head_vectors(enc, qv) @ head_vectors(enc, dv).T).argmax(1) == np.arange(len(DOCS))).sum())

    before = hits()
    train_encoder(enc, pairs, TrainConfig(epochs=40, batch_size=8, lr=1e-2, warmup_steps=2, progress=False,
                                          device="cpu"), EncoderTrainConfig(lr_head=1e-2), cache=(qv, dv))
    assert hits() > before


def test_beir_train_qrels_with_an_unknown_document_id_are_named(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "x"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what"}) + "\n")
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tghost\t1\n")
    with pytest.raises(ValueError, match=r"train.tsv, line 2: corpus-id 'ghost' is not in corpus.jsonl"):
        pairs_from_beir(tmp_path, "train")
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    pairs = pairs_from_beir(tmp_path, "train")
    assert pairs.triples == [(0, 0, -1)] and pairs.docs == ["T x"]


def test_an_etl_run_without_qa_pairs_is_named(tmp_path):
    (tmp_path / "chunks.jsonl").write_text("")
    with pytest.raises(PairDataError, match="has no qa_pairs.jsonl"):
        pairs_from_etl_run(tmp_path)
    (tmp_path / "qa_pairs.jsonl").write_text("")
    with pytest.raises(PairDataError, match="has no QA pairs"):
        pairs_from_etl_run(tmp_path)


def test_etl_pairs_are_synthetic_and_drop_questions_repeated_across_documents(tmp_path):
    def chunk(cid, doc, text):
        return {"chunk_id": cid, "doc_id": doc, "text": text, "position": 0, "section_path": [], "start_char": 0,
                "end_char": len(text), "n_tokens": 3, "metadata": {"title": f"title {doc}"}}

    def qa(qid, cid, doc, q):
        return {"qa_id": qid, "chunk_id": cid, "doc_id": doc, "question": q, "answer": "a"}

    (tmp_path / "chunks.jsonl").write_text("\n".join(json.dumps(c) for c in [chunk("c1", "A", "bees"),
                                                                             chunk("c2", "B", "tides")]))
    (tmp_path / "qa_pairs.jsonl").write_text("\n".join(json.dumps(q) for q in [
        qa("1", "c1", "A", "What do bees make?"), qa("2", "c2", "B", "What do bees make?"),
        qa("3", "c2", "B", "What raises tides?"), qa("4", "ghost", "B", "Lost?")]))
    pairs = pairs_from_etl_run(tmp_path)
    assert pairs.synthetic
    assert [(pairs.queries[q], pairs.docs[p]) for q, p, _ in pairs.triples] == [("What raises tides?", "title B tides")]
    assert "3 of 4 QA pairs dropped (1 with an unknown chunk" in pairs.notes[0]


def test_jsonl_pairs_with_hard_negatives_and_bad_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": ["p1", "p2"], "negative": "n"}) + "\n"
                    + json.dumps({"query": "r", "positive": "p1"}) + "\n")
    pairs = pairs_from_jsonl(path)
    assert [(pairs.queries[q], pairs.docs[p], pairs.docs[n] if n >= 0 else None) for q, p, n in pairs.triples] == [
        ("q", "p1", "n"), ("q", "p2", "n"), ("r", "p1", None)]
    path.write_text(json.dumps({"query": "q", "positive": ""}) + "\n")
    with pytest.raises(PairDataError, match=r"pairs.jsonl, line 1: 'positive' must be a non-empty string"):
        pairs_from_jsonl(path)


def test_bm25_hard_negatives_are_the_best_ranked_non_positive():
    """The bees query shares words with its positive and, less so, with one other document: that
    one is its negative. The sky query's only word-sharing documents are both its positives, and
    the zebra query shares no word with any document: they keep no negative."""
    docs = ["honey bees make honey from nectar", "bees sting and make wax", "the sky is blue", "tides follow the moon",
            "the blue sky scatters light", "wax candles burn"]
    pairs = PairSet("hand", ["how do bees make honey", "why is the sky blue", "zebra stripes"], docs,
                    [f"d{i}" for i in range(len(docs))], [(0, 0, -1), (1, 2, -1), (1, 4, -1), (2, 3, -1)])
    mined = with_bm25_negatives(pairs)
    assert mined.triples == [(0, 0, 1), (1, 2, -1), (1, 4, -1), (2, 3, -1)]
    assert pairs.triples[0] == (0, 0, -1)  # the input is not changed
    assert "1 of 4 pairs" in mined.notes[-1]
    with pytest.raises(PairDataError, match="no training pairs"):
        with_bm25_negatives(PairSet("empty", [], [], [], []))
