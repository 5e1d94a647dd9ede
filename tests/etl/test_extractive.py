"""Answer-first extractive QA: candidate spans, the roundtrip filter, the Alpaca export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from etl_helpers import ScriptedModels

from etl_pipeline import EXIT_OK, EtlConfig, run
from etl_pipeline.assemble import validate_pair
from etl_pipeline.extractive import candidate_spans, choose_candidates
from etl_pipeline.llm_stages import ChunkStages, DocStats
from liquid_shared.schemas import Chunk, FineTuneSample, QAPair, ValidationResult, read_jsonl

TEXT = ("The Normans gave their name to Normandy, a region in France. Their leader Rollo swore fealty "
        "to King Charles III of West Francia in 911, and by 1066 they had conquered England.")


def _chunk(text: str = TEXT) -> Chunk:
    return Chunk(chunk_id="c1", doc_id="d1", text=text, position=0)


def test_candidates_are_spans_of_their_chunk_and_prefer_dates_and_names():
    cands = candidate_spans(TEXT)
    assert cands and all(TEXT[c.start:c.start + len(c.text)] == c.text for c in cands)
    texts = [c.text for c in cands]
    assert "911" in texts and "King Charles III of West Francia" in texts and "Rollo" in texts
    assert "The Normans" not in texts and "Normans" in texts  # a sentence-initial article is not part of a name
    chosen = choose_candidates(TEXT, 2)
    assert [c.kind for c in chosen] == ["number", "name"]
    assert choose_candidates("", 2) == []


class _Reader(ScriptedModels):
    """Scripted question writer and reader; ``wrong=True``: the reader answers another span."""

    def __init__(self, wrong: bool):
        super().__init__()
        self.wrong = wrong

    def _answer(self, name: str, prompt: str) -> dict:  # type: ignore[override]
        if name == "Span" and self.wrong:
            return {"answer": "Normandy"}
        return ScriptedModels._answer(name, prompt)


@pytest.mark.parametrize("wrong", [False, True])
async def test_roundtrip_keeps_a_pair_only_when_the_reader_agrees(wrong: bool, tmp_path: Path):
    async def encode(texts):  # not used by the QA stage
        return np.zeros((len(texts), 4), dtype="float32")

    cfg = EtlConfig(input_dir=tmp_path, output_dir=tmp_path / "out", stages=("qa",), qa_per_chunk=2, qa_mode="extractive")
    stages = ChunkStages(cfg, _Reader(wrong), concurrency=2, encode=encode)
    stats = DocStats()
    items = await stages.extractive_qa(_chunk(), stats)
    assert [i.answer for i in items] == ["911", "King Charles III of West Francia"]
    assert stats.stages["question"].llm == stats.stages["reader"].llm == 2
    for item in items:
        valid, grounded, judge, g, reasons = validate_pair(item, None, _chunk(), grounding_threshold=0.6, judge_threshold=0)
        assert grounded and g == 1.0 and judge is None
        if wrong:
            assert not valid and item.reader_answer == "Normandy"
            assert any(r.startswith("reader disagrees: answered 'Normandy'") for r in reasons), reasons
        else:
            assert valid, reasons
            assert item.reader_answer == item.answer and item.roundtrip_f1 == 1.0


@pytest.mark.slow
def test_alpaca_export_follows_the_convention_field_by_field(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "normans.txt").write_text(TEXT + "\n", encoding="utf-8")
    out = tmp_path / "run"
    result = run(EtlConfig(input_dir=docs, output_dir=out, stages=("qa",), qa_mode="extractive"), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_OK, result.report["errors"]
    chunks = {c.chunk_id: c for c in read_jsonl(out / "chunks.jsonl", Chunk)}
    pairs = {p.qa_id: p for p in read_jsonl(out / "qa_pairs.jsonl", QAPair)}
    valid = {v.qa_id for v in read_jsonl(out / "validation.jsonl", ValidationResult) if v.valid}
    samples = list(read_jsonl(out / "ft" / "samples.jsonl", FineTuneSample))
    alpaca = [json.loads(line) for line in (out / "ft" / "train_alpaca.jsonl").read_text().splitlines()]
    assert len(samples) == len(alpaca) == len(valid) >= 1
    for sample, row in zip(samples, alpaca, strict=True):
        pair = pairs[sample.qa_id]
        assert set(row) == {"instruction", "input", "output"}
        assert row["instruction"] == pair.question  # the task: the question
        assert row["input"] == chunks[pair.chunk_id].text  # the context
        assert row["output"] == pair.answer  # the answer
        assert row["output"] in row["input"]  # extractive: the answer is a span of its context


def test_qa_generation_measures():
    from experiments.catalog.qa_generation import answer_type, distinct_n, question_word

    assert [answer_type(a) for a in ("in 1066", "12 ships", "Rollo", "raiders")] == ["date", "number", "name", "other"]
    assert question_word("When did they land?") == "when" and question_word("Did they?") == "other"
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b", "a b"], 2) == 0.5
