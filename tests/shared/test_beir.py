"""liquid_shared.data.beir: round trip, conventions, precise errors, and the real SciFact counts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from liquid_shared.data import BeirDoc, BeirFormatError, available_splits, load_beir, write_beir

CORPUS = {"d1": BeirDoc("Title one", "Text one."), "d2": {"title": "", "text": "Text two."}, "d3": "Text three."}
QUERIES = {"q1": "first?", "q2": "second?", "q3": "never judged?"}
QRELS = {"q2": {"d2": 1, "d3": 0}, "q1": {"d1": 2}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy", CORPUS, QUERIES, QRELS, split="test")


def test_round_trip(folder: Path) -> None:
    ds = load_beir(folder)
    assert ds.name == "toy" and ds.split == "test"
    assert ds.corpus["d1"] == BeirDoc("Title one", "Text one.")
    assert ds.corpus["d1"].full_text == "Title one\nText one."
    assert ds.corpus["d2"].full_text == "Text two."  # no title: just the text
    assert ds.qrels == {"q2": {"d2": 1, "d3": 0}, "q1": {"d1": 2}}  # every judgment kept, score 0 too
    assert list(ds.queries) == ["q2", "q1"]  # only judged queries, in qrels order
    assert ds.n_judgments == 3
    assert "docs=3" in repr(ds)
    assert available_splits(folder) == ["test"]


def test_header_is_optional_and_blank_lines_are_skipped(folder: Path) -> None:
    (folder / "qrels" / "dev.tsv").write_text("\nq1\td1\t1\n\nq2\td3\t2\n", encoding="utf-8")
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("\n   \n")
    ds = load_beir(folder, split="dev")
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d3": 2}}


def test_missing_split_lists_the_available_ones(folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no qrels for split 'train'; available splits: test"):
        load_beir(folder, split="train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_beir(folder / "nope")


def _write(path: Path, text: str | bytes) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


GOOD_CORPUS = '{"_id": "d1", "title": "", "text": "a"}\n{"_id": "d2", "text": "b"}\n'
MALFORMED = [
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n', 2, r"invalid JSON"),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"title": "x", "text": "b"}\n', 2, r'missing "_id"'),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "", "text": "b"}\n', 2, r'"_id" is empty'),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n\n{"_id": "d1", "text": "b"}\n', 3,
     r"duplicate _id 'd1' \(first on line 1\)"),
    ("corpus.jsonl", '{"_id": "d1", "title": "t"}\n', 1, r'missing "text"'),
    ("corpus.jsonl", '{"_id": "d1", "text": 5}\n', 1, r'"text" must be a string'),
    ("corpus.jsonl", '["d1", "a"]\n', 1, r"expected a JSON object, got list"),
    ("corpus.jsonl", b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "\xff"}\n', 2, r"not valid UTF-8"),
    ("corpus.jsonl", "", None, r"file is empty"),
    ("queries.jsonl", '{"_id": "q1", "text": "x"}\n{"_id": "q1", "text": "y"}\n', 2, r"duplicate _id 'q1'"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\n", 2, r"expected 3 tab-separated columns.*found 2"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, r"score 'high' is not an integer"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n", 3,
     r"query-id 'q9' is not in queries.jsonl"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td7\t1\n", 2, r"corpus-id 'd7' is not in corpus.jsonl"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", 3,
     r"duplicate judgment for query 'q1', document 'd1' \(first on line 2\)"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\n", None, r"file is empty \(no judgments\)"),
]


@pytest.mark.parametrize(("name", "content", "line", "problem"), MALFORMED)
def test_malformed_files_name_file_line_and_problem(tmp_path: Path, name: str, content: str | bytes,
                                                     line: int | None, problem: str) -> None:
    folder = tmp_path / "bad"
    (folder / "qrels").mkdir(parents=True)
    _write(folder / "corpus.jsonl", GOOD_CORPUS)
    _write(folder / "queries.jsonl", '{"_id": "q1", "text": "x"}\n')
    _write(folder / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    _write(folder / name, content)
    with pytest.raises(BeirFormatError, match=problem) as info:
        load_beir(folder)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == folder / name
    assert err.line == line
    assert str(folder / name) in str(err)
    if line is not None:
        assert f"line {line}:" in str(err)


def test_non_strict_drops_unknown_ids_with_a_warning(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t1\nq9\td1\t1\n",
                                               encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        ds = load_beir(folder, strict=False)
    assert ds.qrels == {"q1": {"d1": 1}}
    assert "dropped 2 judgments" in caplog.text


@pytest.mark.shared_data
def test_scifact_published_counts(scifact_dir: Path) -> None:
    test = load_beir(scifact_dir, split="test")
    assert (len(test.corpus), len(test.queries), test.n_judgments) == (5183, 300, 339)
    assert test.corpus["4983"].title.startswith("Microstructural development of human newborn")
    assert test.queries["1"] == "0-dimensional biomaterials show inductive properties."
    train = load_beir(scifact_dir, split="train")
    assert (len(train.queries), train.n_judgments) == (809, 919)
