"""The calibration command: input errors (fast), and a run with the real offline model on a tiny
SQuAD-format file (slow, real_model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl_pipeline import EtlConfig
from etl_pipeline import trust as trust_mod
from etl_pipeline.calibrate import SquadFileError, calibrate, load_paragraphs
from liquid_shared.schemas import QAPair, read_jsonl

# two paragraphs we wrote, with answer spans as SQuAD marks them
TINY = {"version": "v2.0", "data": [{"title": "Tides", "paragraphs": [
    {"context": "The Moon raises two bulges of water on Earth. Most coasts therefore see two high tides each day. "
                "Isaac Newton explained the tides in 1687 with his law of gravitation.",
     "qas": [{"id": "t1", "question": "How many high tides do most coasts see each day?", "is_impossible": False,
              "answers": [{"text": "two", "answer_start": 79}]},
             {"id": "t2", "question": "Who explained the tides?", "is_impossible": False,
              "answers": [{"text": "Isaac Newton", "answer_start": 96}]},
             {"id": "t3", "question": "In what year did Newton explain the tides?", "is_impossible": False,
              "answers": [{"text": "1687", "answer_start": 129}]}]},
]}, {"title": "Bees", "paragraphs": [
    {"context": "A honeybee colony has a single queen. Worker bees build wax cells and store honey in them. "
                "Karl von Frisch described the waggle dance of bees in 1927.",
     "qas": [{"id": "b1", "question": "How many queens does a colony have?", "is_impossible": False,
              "answers": [{"text": "a single queen", "answer_start": 22}]},
             {"id": "b2", "question": "Who described the waggle dance?", "is_impossible": False,
              "answers": [{"text": "Karl von Frisch", "answer_start": 89}]},
             {"id": "b3", "question": "What do bees eat on the Moon?", "is_impossible": True, "answers": []}]},
]}]}


def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    return path


def test_load_paragraphs_reads_answers_and_names_bad_input(tmp_path: Path):
    paras = load_paragraphs(_tiny(tmp_path))
    assert sorted(paras) == ["a0_p00", "a1_p00"]
    assert paras["a1_p00"]["answers"] == ["a single queen", "Karl von Frisch"]  # the impossible one has none
    assert list(load_paragraphs(_tiny(tmp_path), articles=[1])) == ["a1_p00"]
    with pytest.raises(SquadFileError, match="no article \\[5\\]"):
        load_paragraphs(_tiny(tmp_path), articles=[5])
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "x"}]}')
    with pytest.raises(SquadFileError, match="bad.json: not a SQuAD JSON file"):
        load_paragraphs(bad)
    with pytest.raises(SquadFileError, match="not found"):
        load_paragraphs(tmp_path / "missing.json")


@pytest.mark.slow
@pytest.mark.real_model
def test_calibration_with_the_offline_model_measures_stores_and_is_found_by_runs(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(trust_mod, "calibration_dir", lambda: tmp_path / "calibration")
    base = EtlConfig(qa_mode="extractive", validation_profile="precision", qa_per_chunk=2, concurrency=4)
    out = calibrate(base, _tiny(tmp_path), work_dir=tmp_path / "work", n_boot=200)
    run_dir = Path(out["etl_run"])
    generated = list(read_jsonl(run_dir / "qa_pairs.jsonl", QAPair))
    assert set(out["profiles"]) == {"precision", "standard"}
    for profile, fig in out["profiles"].items():
        assert fig["generated"] == len(generated) > 0, profile
        assert fig["precision"]["n"] == fig["kept"] and fig["recall"]["n"] == fig["right"]
        assert fig["yield"]["n"] == fig["chunks"] >= 2
        assert fig["yield"]["mean"] == pytest.approx(fig["kept"] / fig["chunks"])
    # the precision profile keeps a subset of what the standard checks keep
    assert out["profiles"]["precision"]["kept"] <= out["profiles"]["standard"]["kept"]
    # a later run with the same model and profile finds the figures
    statement = trust_mod.trust_statement(base)
    assert statement["calibrated"] and statement["precision"] == out["profiles"]["precision"]["precision"]
    mean = statement["precision"]["mean"]  # None when the profile kept no pair
    assert statement["verified"] == (mean is not None and mean >= 0.8)
    # measuring again resumes the finished ETL run (no document is done again)
    again = calibrate(base, _tiny(tmp_path), work_dir=tmp_path / "work", n_boot=200)
    assert again["profiles"] == out["profiles"]
    assert json.loads((run_dir / "report.json").read_text())["this_run"]["processed"] == 0
