"""A run folder as a Hugging Face dataset, and its exports read by the tools they are for.

The slow tests share one real ETL run (the offline SmolLM2, two sample documents, extractive QA,
so the reader's disagreements give DPO rows): ``datasets.load_dataset`` reads every config of
the card; TRL's DPOTrainer prepares (tokenises) the DPO export; sentence-transformers trains one
step on the pairs; the BEIR export loads in ``liquid_shared.data.beir`` and runs through the
``rag_quality`` experiment. The fast tests cover bad input and the DPO pairing rules.
"""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import click.testing
import pytest
import yaml
from etl_helpers import REPO, SAMPLES
from typer.testing import CliRunner

from etl_pipeline.dataset_card import attach_dataset
from etl_pipeline.export import app, load_run, preference_rows
from etl_pipeline.run_tables import SCHEMAS, TABLE_SOURCES
from liquid_shared.cli_options import EXIT_OK, EXIT_USAGE
from liquid_shared.schemas import Chunk, QAPair, ValidationResult, write_jsonl


def _export(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from etl_pipeline import EtlConfig, run

    out = tmp_path_factory.mktemp("datasets") / "run"
    result = run(EtlConfig(input_dir=SAMPLES, output_dir=out, limit=2, qa_mode="extractive"), track=False)
    assert result.exit_code == 0, result.message
    return out


def _card_configs(run_dir: Path) -> dict[str, str]:
    text = (run_dir / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    return {c["config_name"]: c["data_files"][0]["path"] for c in front["configs"]}


@pytest.mark.slow
@pytest.mark.real_model
def test_every_config_of_the_card_loads_with_datasets(run_dir: Path, tmp_path: Path):
    import datasets

    report = json.loads((run_dir / "report.json").read_text())
    assert report["dataset"]["ok"], report["dataset"]
    configs = _card_configs(run_dir)
    files = {s.name: s.path for s in TABLE_SOURCES}
    assert "chunks" in configs and "qa_pairs" in configs and "validation" in configs
    for name in configs:
        ds = datasets.load_dataset(str(run_dir), name, split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == len(_lines(run_dir / files[name])) > 0
        assert list(ds.features) == SCHEMAS[name].names
    # a table of no rows gets no config (datasets cannot build an empty split) and the card says so
    for name in report["dataset"]["empty_tables"]:
        assert name not in configs and not _lines(run_dir / files[name])
    chunks = datasets.load_dataset(str(run_dir), cache_dir=str(tmp_path / "hf"))["train"]  # the default config
    assert chunks["chunk_id"] == [c["chunk_id"] for c in _lines(run_dir / "chunks.jsonl")]
    card = (run_dir / "README.md").read_text()
    assert "synthetic" in card and report["trust"]["message"] in card


@pytest.mark.slow
@pytest.mark.real_model
def test_dpo_export_goes_through_trl_dataset_preparation(run_dir: Path, tmp_path: Path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from liquid_shared.offline import ensure_smollm2

    out = tmp_path / "dpo"
    result = _export(str(run_dir), "--format", "dpo", "-o", str(out))
    assert result.exit_code == EXIT_OK, result.output
    rows = _lines(out / "train.jsonl")
    assert rows, "an extractive run whose reader disagreed has preference rows"
    verdicts = {v["qa_id"]: v for v in _lines(run_dir / "validation.jsonl")}
    for row in rows:
        assert not verdicts[row["qa_id"]]["valid"]  # the rejected answer's pair was rejected
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["labels"] == "synthetic" and manifest["rows"] == len(rows)

    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    path = ensure_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True, max_length=512,
                     per_device_train_batch_size=1, dataset_num_proc=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows)
    first = prepared[0]
    assert first["prompt_ids"] and first["chosen_ids"] and first["rejected_ids"]
    assert rows[0]["chosen"][0]["content"] in tokenizer.decode(first["chosen_ids"])


@pytest.mark.slow
@pytest.mark.real_model
def test_st_pairs_train_one_step_with_sentence_transformers(run_dir: Path, tmp_path: Path):
    import datasets
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from liquid_shared.offline import minilm_path

    out = tmp_path / "pairs"
    result = _export(str(run_dir), "--format", "st-pairs", "--questions", "all", "-o", str(out))
    assert result.exit_code == EXIT_OK, result.output
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["anchor", "positive"]
    chunk_texts = {c["text"] for c in _lines(run_dir / "chunks.jsonl")}
    assert set(ds["positive"]) <= chunk_texts
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "st"), max_steps=1, per_device_train_batch_size=4,
                                                report_to="none", use_cpu=True, save_strategy="no")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model))
    output = trainer.train()
    assert output.global_step == 1


@pytest.mark.slow
@pytest.mark.real_model
def test_beir_export_loads_and_runs_through_rag_quality(run_dir: Path, tmp_path: Path):
    from experiments.cli import app as experiments_app
    from liquid_shared.data.beir import load_beir

    # the run kept no pair (offline model, extractive): the default (valid questions) is refused, naming the run
    refused = _export(str(run_dir), "--format", "beir", "-o", str(tmp_path / "refused"))
    kept = [v for v in _lines(run_dir / "validation.jsonl") if v["valid"]]
    if not kept:
        assert refused.exit_code == EXIT_USAGE and str(run_dir) in refused.output
    out = tmp_path / "beir"
    result = _export(str(run_dir), "--format", "beir", "--questions", "all", "-o", str(out))
    assert result.exit_code == EXIT_OK, result.output
    data = load_beir(out)
    pairs = _lines(run_dir / "qa_pairs.jsonl")
    assert data.qrels == {p["qa_id"]: {p["chunk_id"]: 1} for p in pairs}
    assert set(data.corpus) == {c["chunk_id"] for c in _lines(run_dir / "chunks.jsonl")}
    assert "synthetic" in (out / "README.md").read_text()

    config = tmp_path / "exp.toml"
    config.write_text('[rag_quality]\nvariants = [{name = "bm25", retriever = "bm25"}]\nn_boot = 100\n')
    results = tmp_path / "results"
    ran = CliRunner().invoke(experiments_app, ["run", "--experiments", "rag_quality", "--dataset", str(out), "--config",
                                               str(config), "--output", str(results), "--mlflow-uri",
                                               f"sqlite:///{tmp_path}/mlruns.db"], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    described = json.loads((results / "rag_quality" / "dataset.json").read_text())
    assert described["queries_evaluated"] == len(pairs) and described["documents"] == len(data.corpus)
    assert described["judgments"] == "synthetic"  # an export's qrels are the pipeline's, never called human
    assert json.loads((results / "rag_quality" / "metrics.json").read_text())["bm25"]["synthetic_labels"] == 1.0

    ragas = tmp_path / "ragas"
    assert _export(str(run_dir), "--format", "ragas", "--questions", "all", "-o", str(ragas)).exit_code == EXIT_OK
    rows = _lines(ragas / "testset.jsonl")
    assert [r["user_input"] for r in rows] == [p["question"] for p in pairs]
    assert all(len(r["reference_contexts"]) == 1 and r["reference_contexts"][0] in {c["text"] for c in _lines(
        run_dir / "chunks.jsonl")} for r in rows)


# fast: bad input, the pairing rules, a failing parquet write -------------------------------------------------


def _small_run(folder: Path, pairs: list[QAPair], verdicts: list[ValidationResult]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "chunks.jsonl", [Chunk(chunk_id="c1", doc_id="d1", text="The tide rises twice a day.", position=0)])
    write_jsonl(folder / "qa_pairs.jsonl", pairs)
    write_jsonl(folder / "validation.jsonl", verdicts)
    return folder


def _pair(qa_id: str, question: str, answer: str) -> QAPair:
    return QAPair(qa_id=qa_id, chunk_id="c1", doc_id="d1", question=question, answer=answer)


def _verdict(qa_id: str, valid: bool, reasons: list[str] = ()) -> ValidationResult:
    return ValidationResult(qa_id=qa_id, valid=valid, grounded=valid, reasons=list(reasons))


@pytest.mark.parametrize("case", ["missing", "file", "no_chunks_file", "empty_chunks", "no_qa"])
def test_bad_input_is_a_usage_error_naming_the_path(case: str, tmp_path: Path):
    target = tmp_path / "target"
    if case == "file":
        target.write_text("x")
    elif case == "no_chunks_file":
        target.mkdir()
    elif case == "empty_chunks":
        target.mkdir()
        (target / "chunks.jsonl").write_text("")
    elif case == "no_qa":
        target.mkdir()
        write_jsonl(target / "chunks.jsonl", [Chunk(chunk_id="c1", doc_id="d1", text="t", position=0)])
    result = _export(str(target), "--format", "beir", "-o", str(tmp_path / "out"))
    assert result.exit_code == EXIT_USAGE
    assert str(target) in result.output
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_that_is_no_export_is_never_replaced(tmp_path: Path):
    run = _small_run(tmp_path / "run", [_pair("q1", "How often does the tide rise?", "twice a day")], [_verdict("q1", True)])
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    result = _export(str(run), "--format", "st-pairs", "-o", str(keep))
    assert result.exit_code == EXIT_USAGE and str(keep) in result.output
    assert (keep / "notes.txt").read_text() == "mine"
    # an earlier export is replaced
    out = tmp_path / "pairs"
    assert _export(str(run), "--format", "st-pairs", "-o", str(out)).exit_code == EXIT_OK
    assert _export(str(run), "--format", "st-pairs", "-o", str(out)).exit_code == EXIT_OK
    assert _lines(out / "train.jsonl") == [{"anchor": "How often does the tide rise?", "positive": "The tide rises twice a day."}]


def test_preference_rows_pair_a_kept_and_a_rejected_answer_of_one_prompt(tmp_path: Path):
    from etl_pipeline.extractive import Candidate, roundtrip_item

    disagreement = roundtrip_item("When does it rise?", Candidate("twice a day", 15, "number"), "the tide", 0.5)
    pairs = [_pair("k", "How often does the tide rise?", "twice a day"),
             _pair("r", "how often does the tide rise", "once a year"),  # same prompt after normalisation
             _pair("x", "What rises?", "twice"),  # rejected, no kept twin, no roundtrip reason: no row
             _pair("t", "When does it rise?", "twice a day")]
    verdicts = [_verdict("k", True), _verdict("r", False, ["answer not grounded"]), _verdict("x", False, ["judge: no"]),
                _verdict("t", False, [disagreement.roundtrip_reason()])]
    run = _small_run(tmp_path / "run", pairs, verdicts)
    rows = preference_rows(load_run(run))
    got = {(r["source"], r["qa_id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert got == {("same_prompt", "r", "twice a day", "once a year"), ("roundtrip", "t", "twice a day", "the tide")}
    assert all(r["prompt"][-1]["content"].startswith("Context:\nThe tide rises") for r in rows)
    # with no such prompt the export succeeds with 0 rows and says why
    none = _small_run(tmp_path / "none", pairs[:1], verdicts[:1])
    result = _export(str(none), "--format", "dpo", "-o", str(tmp_path / "dpo"))
    assert result.exit_code == EXIT_OK and "0 preference rows" in result.output
    assert _lines(tmp_path / "dpo" / "train.jsonl") == []


def test_a_table_that_cannot_be_written_is_reported_and_the_others_are_kept(tmp_path: Path):
    run = _small_run(tmp_path / "run", [_pair("q1", "How often?", "twice a day")], [_verdict("q1", True)])
    (run / "summaries.jsonl").write_text('{"not": "a summary"}\n')
    report: dict = {"warnings": []}
    outcome = attach_dataset(run, report)
    assert not outcome["ok"] and any("summaries" in e and "summaries.jsonl" in e for e in outcome["errors"])
    assert report["dataset"] is outcome and report["warnings"]
    assert set(_card_configs(run)) == {"chunks", "qa_pairs", "validation"}
    assert not (run / "parquet" / "summaries.parquet").exists()


def test_the_liquid_command_entry_point_names_the_export_app():
    meta = tomllib.loads((REPO / "liquid-etl-pipeline" / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["liquid.commands"]["export"]
    from liquid_shared.cli import _as_click

    command = _as_click(EntryPoint("export", target, "liquid.commands").load(), "export")
    result = click.testing.CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    for option in ("--format", "--output", "--questions"):
        assert option in result.output
