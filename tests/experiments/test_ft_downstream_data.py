"""ft_downstream's data: equal-sized validated / rejected / random sets from an ETL run, the SQuAD
questions it is scored on, and the seeded Wikipedia sample it makes its ETL input from."""

from __future__ import annotations

import json

import pytest

from experiments.catalog.ft_downstream import squad_questions, variant_sets
from experiments.wikipedia_sample import write_article_sample


def _etl_run(folder, n_valid: int, n_rejected: int):
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, write_jsonl

    chunk = Chunk(chunk_id="c1", doc_id="d1", text="The red box is on the table.", position=0)
    pairs, verdicts = [], []
    for i in range(n_valid + n_rejected):
        pairs.append(QAPair(qa_id=f"q{i}", chunk_id="c1", doc_id="d1", question=f"Question {i}?", answer=f"answer {i}"))
        verdicts.append(ValidationResult(qa_id=f"q{i}", valid=i < n_valid, grounded=i < n_valid))
    write_jsonl(folder / "chunks.jsonl", [chunk])
    write_jsonl(folder / "qa_pairs.jsonl", pairs)
    write_jsonl(folder / "validation.jsonl", verdicts)
    return folder


def test_variant_sets_are_equal_sized_and_drawn_from_the_right_verdicts(tmp_path):
    run = _etl_run(tmp_path, n_valid=5, n_rejected=8)
    sets = variant_sets(run, max_pairs=100, seed=0)
    assert {k: len(v) for k, v in sets.items()} == {"validated": 5, "rejected": 5, "random": 5}
    answer_ids = {k: {int(c[-1]["content"].split()[-1]) for c in v} for k, v in sets.items()}
    assert answer_ids["validated"] == set(range(5))
    assert answer_ids["rejected"] <= set(range(5, 13))
    first = sets["validated"][0]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"].startswith("Context:\nThe red box") and "\n\nQuestion: Question" in first[1]["content"]
    assert variant_sets(run, max_pairs=100, seed=0) == sets
    assert len(variant_sets(run, max_pairs=3, seed=0)["random"]) == 3
    small = tmp_path / "small"
    small.mkdir()
    with pytest.raises(ValueError, match="need at least 2"):
        variant_sets(_etl_run(small, 1, 4), 10, 0)


@pytest.mark.shared_data
def test_squad_questions_are_answerable_and_seeded(shared_data_dir):
    path = shared_data_dir / "squad" / "dev-v2.0-3articles.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    questions = squad_questions(path, 40, seed=1)
    assert len(questions) == 40 and len({q["id"] for q in questions}) == 40
    assert all(q["answers"] and all(a in q["context"] for a in q["answers"]) for q in questions)
    assert squad_questions(path, 40, seed=1) == questions
    assert squad_questions(path, 40, seed=2) != questions


@pytest.mark.shared_data
def test_wikipedia_sample_is_seeded_text(wikipedia_articles, tmp_path):
    a = write_article_sample(wikipedia_articles, tmp_path / "a", 3, seed=5).read_text(encoding="utf-8")
    b = write_article_sample(wikipedia_articles, tmp_path / "b", 3, seed=5).read_text(encoding="utf-8")
    assert a == b
    records = [json.loads(line) for line in a.splitlines()]
    assert len(records) == 3 and all(len(r["text"]) > 500 and r["title"] for r in records)
