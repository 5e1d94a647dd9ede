"""Fixtures of the experiments tests: tiny BEIR folders, a tiny ETL-format run, tiny documents, a tmp
MLflow store and a throwaway project folder. Helpers are in ``experiments_testkit``.

Every run writes to tmp folders and a tmp sqlite MLflow store; nothing lands in the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from experiments_testkit import (  # noqa: E402
    PARAPHRASES,
    hand_beir_corpus,
    hand_beir_queries,
    write_etl_like_run,
)


@pytest.fixture(scope="session")
def hand_beir(tmp_path_factory) -> Path:
    from liquid_shared.data import write_beir

    corpus = hand_beir_corpus()
    queries, qrels = hand_beir_queries(corpus)
    return write_beir(tmp_path_factory.mktemp("beir") / "hand", corpus, queries, qrels)


@pytest.fixture(scope="session")
def paraphrase_beir(tmp_path_factory) -> Path:
    """12 paraphrase queries (BM25 finds nothing) plus 8 unrelated filler documents."""
    from liquid_shared.data import write_beir

    corpus = {f"p{i:02d}": {"title": "", "text": doc} for i, (doc, _) in enumerate(PARAPHRASES)}
    fillers = ["Granite is an igneous rock.", "Chess openings have names.", "Volcanoes erupt lava.",
               "Bees pollinate flowers.", "Glaciers carve valleys.", "Copper conducts current.",
               "Owls hunt at night.", "Tea contains caffeine."]
    corpus.update({f"f{i}": {"title": "", "text": t} for i, t in enumerate(fillers)})
    queries = {f"q{i:02d}": q for i, (_, q) in enumerate(PARAPHRASES)}
    qrels = {f"q{i:02d}": {f"p{i:02d}": 1} for i in range(len(PARAPHRASES))}
    return write_beir(tmp_path_factory.mktemp("beir") / "paraphrase", corpus, queries, qrels)


@pytest.fixture(scope="session")
def etl_like_run(tmp_path_factory) -> Path:
    return write_etl_like_run(tmp_path_factory.mktemp("etl") / "run")


@pytest.fixture(scope="session")
def tiny_documents(tmp_path_factory) -> Path:
    """One short document: one chunk, so a real ETL run makes only a few model calls."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "tides.txt").write_text(
        "Tides\n\nThe Moon's gravity pulls on the oceans. This pull causes two high tides every day. "
        "Spring tides happen when the Sun and the Moon are in line.\n", encoding="utf-8")
    return folder


TINY_SQUAD = {"version": "v2.0", "data": [
    {"title": "Tides", "paragraphs": [
        {"context": "The Moon's gravity pulls on the oceans. This pull causes two high tides every day. "
                    "Spring tides happen when the Sun and the Moon are in line.",
         "qas": [{"id": "t1", "question": "What pulls on the oceans?", "is_impossible": False,
                  "answers": [{"text": "The Moon's gravity", "answer_start": 0}]},
                 {"id": "t2", "question": "How many high tides are there every day?", "is_impossible": False,
                  "answers": [{"text": "two", "answer_start": 58}]},
                 {"id": "t3", "question": "What causes low rainfall?", "is_impossible": True, "answers": []}]},
        {"context": "Neap tides happen when the Sun and the Moon are at right angles. Their range is small.",
         "qas": [{"id": "t4", "question": "When do neap tides happen?", "is_impossible": False,
                  "answers": [{"text": "when the Sun and the Moon are at right angles", "answer_start": 18}]}]}]},
    {"title": "Bees", "paragraphs": [
        {"context": "Honey bees make honey from the nectar of flowers. A colony has one queen.",
         "qas": [{"id": "b1", "question": "What do honey bees make honey from?", "is_impossible": False,
                  "answers": [{"text": "the nectar of flowers", "answer_start": 27}]}]}]},
]}


@pytest.fixture(scope="session")
def tiny_squad(tmp_path_factory) -> Path:
    """A SQuAD v2.0 file of two articles (three paragraphs, four answerable questions, one not)."""
    import json

    path = tmp_path_factory.mktemp("squad") / "tiny-squad.json"
    path.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns.db'}"


@pytest.fixture
def in_tmp_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside a throwaway project so no tracking copy or default output lands in the repository."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.delenv("LIQUID_MLFLOW_URI", raising=False)
    return project
