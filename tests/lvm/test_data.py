"""Documents, document-disjoint splits, windows inside documents, the saved corpus, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liquid_lvm.data import (
    WindowDataset,
    load_corpus,
    load_documents,
    prepare_corpus,
    save_corpus,
    split_documents,
    window_starts,
)


class HashEmbedder:
    """Deterministic stand-in for the split/window logic tests (the real encoder has its own test)."""

    model_name = "hash-16"

    def encode(self, texts, show_progress=False):
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _write_jsonl(path, docs):
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


def _docs(n, lengths):
    return [{"id": f"doc{i}", "title": f"T{i}", "paragraphs": [{"text": f"doc {i} paragraph {j}"} for j in range(L)]}
            for i, L in zip(range(n), lengths, strict=True)]


def test_splits_are_document_disjoint_and_windows_stay_inside_documents(tmp_path):
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 15, size=40).tolist()
    docs, report = load_documents(_write_jsonl(tmp_path / "d.jsonl", _docs(40, lengths)))
    corpus = prepare_corpus(docs, context=4, seed=3, embedder=HashEmbedder())
    seen = [d for split in corpus.splits.values() for d in split]
    assert sorted(seen) == list(range(40))  # every document in exactly one split
    doc = corpus.doc_of_row()
    short = {s: sum(lengths[d] < 5 for d in corpus.splits[s]) for s in corpus.splits}
    for split, starts in corpus.windows.items():
        members = set(corpus.splits[split])
        for s in starts:
            assert doc[s] == doc[s + 4] and doc[s] in members  # context and target in one document
        assert corpus.skipped_short[split] == short[split]
        assert len(starts) == sum(max(0, lengths[d] - 4) for d in members)
    assert split_documents(40, seed=3) == corpus.splits and split_documents(40, seed=4) != corpus.splits


def test_save_and_load_round_trip(tmp_path):
    docs, _ = load_documents(_write_jsonl(tmp_path / "d.jsonl", _docs(6, [6, 7, 8, 9, 10, 11])))
    corpus = prepare_corpus(docs, context=3, embedder=HashEmbedder())
    back = load_corpus(save_corpus(corpus, tmp_path / "c"))
    np.testing.assert_array_equal(back.vectors, corpus.vectors)
    assert back.splits == corpus.splits and back.texts == corpus.texts and back.counts() == corpus.counts()
    ds = WindowDataset(back, "train")
    ctx, mask, target, row = ds[0]
    np.testing.assert_array_equal(ctx.numpy(), corpus.vectors[row - 3:row])
    np.testing.assert_array_equal(target.numpy(), corpus.vectors[row])
    all_ctx, _, _, rows = ds.tensors()
    assert all_ctx.shape == (len(ds), 3, 16) and rows.tolist() == (back.windows["train"] + 3).tolist()


def test_sources_etl_run_and_squad(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    chunks = [{"chunk_id": f"c{i}", "doc_id": "A" if i % 2 else "B", "text": f"text {i}", "position": 5 - i // 2}
              for i in range(6)]
    (run / "chunks.jsonl").write_text("\n".join(json.dumps(c) for c in chunks) + "\n")
    docs, report = load_documents(run)
    by_id = {d.doc_id: d.chunks for d in docs}
    assert report.kind == "etl_run" and by_id["A"] == ("text 5", "text 3", "text 1")  # by position
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"title": "X", "paragraphs": [{"context": "p1"}, {"context": "p2"}]}]}))
    docs, report = load_documents(squad)
    assert report.kind == "squad" and docs[0].chunks == ("p1", "p2")


def test_excluded_sections_are_dropped_and_counted(tmp_path):
    path = tmp_path / "wiki.jsonl"
    paragraphs = [{"section": "", "text": "Intro."}, {"section": "History > References", "text": "http://a"},
                  {"section": "History", "text": "Founded."}, {"section": "references", "text": "http://b"},
                  {"section": "External links", "text": "http://c"}, "a plain string paragraph"]
    path.write_text(json.dumps({"id": "w", "paragraphs": paragraphs}) + "\n")
    docs, report = load_documents(path, exclude_sections=["References", "External links"])
    assert docs[0].chunks == ("Intro.", "Founded.", "a plain string paragraph") and report.excluded_chunks == 3
    docs, report = load_documents(path)
    assert len(docs[0].chunks) == 6 and report.excluded_chunks == 0
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"title": "X", "paragraphs": [{"context": "p1"}]}]}))
    with pytest.raises(ValueError, match="exclude_sections needs a JSONL source"):
        load_documents(squad, exclude_sections=["References"])


def test_bad_input_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "paragraphs": ["x", "y"]}\nnot json\n{"title": "no id", "paragraphs": []}\n')
    docs, report = load_documents(path)
    assert [d.doc_id for d in docs] == ["a"] and set(report.skipped) == {"line 2", "line 3"}
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl has no documents"):
        load_documents(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="not an ETL run folder"):
        load_documents(tmp_path)
    with pytest.raises(ValueError, match="document list is empty"):
        prepare_corpus([], embedder=HashEmbedder())
    with pytest.raises(ValueError, match="context length and stride"):
        window_starts(np.array([0, 5]), [0], 0)
    with pytest.raises(FileNotFoundError, match="not a prepared LVM corpus"):
        load_corpus(tmp_path)


def test_real_minilm_embeddings(tmp_path):
    docs, _ = load_documents(_write_jsonl(tmp_path / "d.jsonl", [
        {"id": "cats", "paragraphs": ["Cats are small domestic felines.", "They purr when they are content.",
                                      "Many cats sleep most of the day."]},
        {"id": "rome", "paragraphs": ["Rome is the capital of Italy.", "The Colosseum is in Rome.",
                                      "Roman emperors ruled a vast empire."]},
        {"id": "jazz", "paragraphs": ["Jazz began in New Orleans.", "Improvisation is central to jazz.",
                                      "Miles Davis was a jazz trumpeter."]}]))
    corpus = prepare_corpus(docs, context=1, fractions=(0.34, 0.33, 0.33))
    assert corpus.vectors.shape == (9, 384) and corpus.model == "offline:all-minilm-l6-v2"
    np.testing.assert_allclose(np.linalg.norm(corpus.vectors, axis=1), 1.0, atol=1e-5)
    sims = corpus.vectors @ corpus.vectors.T
    assert sims[0, 1] > sims[0, 4] and sims[3, 4] > sims[3, 7]  # same topic closer than another topic
