"""Orchestration of the graph and the runner, with a scripted FunctionModel standing in for the LLM.

These tests are about how work flows (batches, fallbacks, bookkeeping, resume), not about what
a model writes; the end-to-end tests run the real offline model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from etl_helpers import RUN_INDEX_FILES, ScriptedModels, run_file

from etl_pipeline import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EtlConfig, run
from liquid_shared.schemas import (
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    read_jsonl,
)
from rag_runtime import RagIndex


def _config(input_dir: Path, out: Path, **kw) -> EtlConfig:
    # the orchestration tests follow the abstractive QA path (one QAOut call + judges per chunk);
    # the extractive path has its own test below
    return EtlConfig(input_dir=input_dir, output_dir=out, **{"qa_mode": "abstractive", **kw})


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_full_run_writes_every_output_consistently(sample_copy: Path, tmp_path: Path, scripted: ScriptedModels):
    out = tmp_path / "run"
    result = run(_config(sample_copy, out, concurrency=4), model_provider=scripted, track=False)
    assert result.exit_code == EXIT_OK, result.report["errors"]
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    assert counts["documents_done"] == 7 and counts["chunks"] == len(chunks) > 7
    assert len(list(read_jsonl(out / "metadata.jsonl", ChunkMetadata))) == len(chunks)
    assert len(list(read_jsonl(out / "summaries.jsonl", Summary))) == len(chunks)
    qa = list(read_jsonl(out / "qa_pairs.jsonl", QAPair))
    validations = list(read_jsonl(out / "validation.jsonl", ValidationResult))
    samples = list(read_jsonl(out / "ft" / "samples.jsonl", FineTuneSample))
    assert counts["qa_pairs"] == len(qa) == len(validations)
    assert counts["ft_samples"] == len(samples) == len(_lines(out / "ft" / "train.jsonl")) == len(_lines(out / "ft" / "train_alpaca.jsonl"))
    assert [s.to_chat_json() for s in samples] == _lines(out / "ft" / "train.jsonl")
    rag = RagIndex.load(out)  # the run folder is the index
    assert rag.dense is not None and rag.dense.index.ntotal == counts["index_vectors"] == len(chunks)
    assert rag.store.ids == [c.chunk_id for c in chunks]
    assert [d.metadata["doc_id"] for d in rag.store.docs] == [c.doc_id for c in chunks]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {d["status"] for d in manifest["documents"]} == {"done"}
    assert all(len(d["content_hash"]) == 64 for d in manifest["documents"])
    # every stage of every chunk ran through its agent
    assert scripted.calls["GroundedMetadataOut"] == scripted.calls["SummaryOut"] == scripted.calls["QAOut"] == len(chunks)
    assert report["stages"]["summary"]["llm"] == len(chunks)
    assert (out / "quality.json").is_file()


def test_every_stage_has_one_name_and_a_model_role():
    """A stage's name is its graph step, its ``--stages`` value, its report key (``DocStats``), its
    ``ChunkStages`` method and its output budget; its model comes from a role of every profile."""
    from etl_pipeline.config import LLM_STAGES, MODEL_ROLES_USED
    from etl_pipeline.graph import build_document_graph
    from etl_pipeline.llm_stages import STAGE_MAX_TOKENS, STAGE_ROLE, ChunkStages
    from liquid_shared.models import ROLES

    nodes = set(build_document_graph().nodes)
    assert set(LLM_STAGES) <= nodes
    assert set(LLM_STAGES) <= set(STAGE_MAX_TOKENS) and set(STAGE_MAX_TOKENS) <= set(STAGE_ROLE)
    assert all(callable(getattr(ChunkStages, stage, None)) for stage in LLM_STAGES)
    assert set(STAGE_ROLE.values()) == set(MODEL_ROLES_USED) and set(MODEL_ROLES_USED) <= set(ROLES)


@pytest.mark.slow
def test_concurrency_bounds_requests_per_stage_and_fills_batches(sample_copy: Path, tmp_path: Path):
    for limit in (1, 5):
        scripted = ScriptedModels(hold_until=limit)
        cfg = _config(sample_copy, tmp_path / f"run{limit}", concurrency=limit, docs_in_flight=7)
        run(cfg, model_provider=scripted, track=False)
        # every stage reaches its bound (full batches of one stage) and never exceeds it
        for stage in ("GroundedMetadataOut", "ClassificationOut", "SummaryOut", "QAOut", "JudgeOut"):
            assert scripted.max_stage_in_flight[stage] == limit, stage
        assert limit < scripted.max_in_flight <= 7 * limit  # stages run side by side


def test_a_failing_stage_falls_back_and_loses_nothing_else(sample_copy: Path, tmp_path: Path):
    scripted = ScriptedModels(fail_stages={"SummaryOut"}, garbage_stages={"GroundedMetadataOut"})
    out = tmp_path / "run"
    result = run(_config(sample_copy, out), model_provider=scripted, track=False)
    assert result.exit_code == EXIT_OK  # item failures are recorded, documents still complete
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    summaries = list(read_jsonl(out / "summaries.jsonl", Summary))
    metadata = list(read_jsonl(out / "metadata.jsonl", ChunkMetadata))
    assert len(summaries) == len(metadata) == len(chunks)
    assert {s.source for s in summaries} == {"fallback"} and {m.source for m in metadata} == {"fallback"}
    assert all(s.summary for s in summaries)
    assert result.report["counts"]["qa_pairs"] > 0  # QA still came from the model
    errors = result.report["errors"]
    assert {e["stage"] for e in errors} == {"summary", "metadata"}
    assert all(e["source"] and e["chunk_id"] for e in errors)
    assert result.report["stages"]["summary"]["failed"] == len(chunks)


def test_disabled_stages_use_fallbacks_without_calling_the_model(sample_copy: Path, tmp_path: Path, scripted: ScriptedModels):
    run(_config(sample_copy, tmp_path / "run", stages=("summary",), limit=2), model_provider=scripted, track=False)
    assert set(scripted.calls) == {"SummaryOut"}
    assert not (tmp_path / "run" / "ft" / "train.jsonl").read_text()


def test_rerun_skips_unchanged_and_reprocesses_changed_and_removed_files(sample_copy: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = ScriptedModels()
    run(_config(sample_copy, out), model_provider=first, track=False)
    before = (out / "chunks.jsonl").read_bytes()
    again = ScriptedModels()
    result = run(_config(sample_copy, out), model_provider=again, track=False)
    assert sum(again.calls.values()) == 0
    assert result.report["this_run"]["skipped_unchanged"] == 7
    assert (out / "chunks.jsonl").read_bytes() == before

    (sample_copy / "tides.md").write_text("# Tides\n\nTides rise and fall twice a day because of the Moon.\n", encoding="utf-8")
    (sample_copy / "sourdough_starter.txt").unlink()
    changed = ScriptedModels()
    result = run(_config(sample_copy, out), model_provider=changed, track=False)
    assert result.report["this_run"]["processed"] == 1
    assert changed.calls["SummaryOut"] == 1
    sources = {c.metadata["source"] for c in read_jsonl(out / "chunks.jsonl", Chunk)}
    assert "sourdough_starter.txt" not in sources and "tides.md" in sources
    assert len(list((out / "docs").iterdir())) == 6  # shards of the old tides.md and the deleted file are gone


def test_changed_settings_reprocess_everything(sample_copy: Path, tmp_path: Path):
    out = tmp_path / "run"
    run(_config(sample_copy, out, limit=2), model_provider=ScriptedModels(), track=False)
    rerun = ScriptedModels()
    result = run(_config(sample_copy, out, limit=2, qa_per_chunk=1), model_provider=rerun, track=False)
    assert result.report["this_run"]["processed"] == 2
    assert rerun.calls["QAOut1"] == result.report["counts"]["chunks"]
    assert all(len([q for q in read_jsonl(out / "qa_pairs.jsonl", QAPair) if q.chunk_id == c.chunk_id]) <= 1
               for c in read_jsonl(out / "chunks.jsonl", Chunk))


def test_interrupted_run_resumes_to_the_same_outputs(sample_copy: Path, tmp_path: Path):
    """A crash after some documents (simulated by an exception escaping the run) loses nothing."""
    reference = tmp_path / "reference"
    run(_config(sample_copy, reference), model_provider=ScriptedModels(), track=False)

    out = tmp_path / "run"

    class Crash(BaseException):
        pass

    class CrashAfter:
        def __init__(self, n: int):
            self.n = n

        def chunks_found(self, doc, n): ...

        def chunk_done(self, doc): ...

        def llm_call(self, stage, tokens): ...

        def document_done(self, outcome):
            self.n -= 1
            if self.n == 0:
                raise Crash

    with pytest.raises(Crash):
        run(_config(sample_copy, out, docs_in_flight=1), model_provider=ScriptedModels(), events=CrashAfter(3), track=False)
    assert not (out / "report.json").exists()
    done = len([p for p in (out / "docs").iterdir() if not p.name.startswith(".")])
    assert 3 <= done < 7
    resumed = ScriptedModels()
    result = run(_config(sample_copy, out), model_provider=resumed, track=False)
    assert result.report["this_run"]["skipped_unchanged"] == done
    for name in ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl", "ft/train.jsonl", *RUN_INDEX_FILES):
        assert run_file(out, name) == run_file(reference, name), name


def test_bad_documents_fail_alone_and_the_exit_code_says_partial(sample_copy: Path, tmp_path: Path, scripted: ScriptedModels):
    (sample_copy / "empty.txt").write_bytes(b"")
    (sample_copy / "binary.md").write_bytes(bytes(range(256)) * 20)
    good_pdf = (sample_copy / "photosynthesis.pdf").read_bytes()
    (sample_copy / "broken.pdf").write_bytes(good_pdf[: len(good_pdf) // 3])
    (sample_copy / "nothing_here").mkdir()
    out = tmp_path / "run"
    result = run(_config(sample_copy, out), model_provider=scripted, track=False)
    assert result.exit_code == EXIT_PARTIAL
    failed = {e["source"]: e["error"] for e in result.report["errors"] if e["stage"] == "load"}
    assert set(failed) == {"empty.txt", "binary.md", "broken.pdf"}
    assert "empty document" in failed["empty.txt"] and "binary" in failed["binary.md"] and "PDF" in failed["broken.pdf"]
    assert result.report["counts"]["documents_done"] == 7
    manifest = {d["source"]: d for d in json.loads((out / "manifest.json").read_text())["documents"]}
    assert manifest["empty.txt"]["status"] == "failed" and manifest["tides.md"]["status"] == "done"


def test_failed_documents_are_retried_on_the_next_run(sample_copy: Path, tmp_path: Path):
    (sample_copy / "later.txt").write_bytes(b"")
    out = tmp_path / "run"
    assert run(_config(sample_copy, out), model_provider=ScriptedModels(), track=False).exit_code == EXIT_PARTIAL
    (sample_copy / "later.txt").write_text("Now it has a sentence about owls hunting at night.", encoding="utf-8")
    result = run(_config(sample_copy, out), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_OK
    assert result.report["this_run"]["processed"] == 1


def test_empty_or_missing_input_folder_is_fatal_with_a_clear_message(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = run(_config(tmp_path / "empty", tmp_path / "run"), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_FATAL
    assert "no documents found in" in result.message and ".pdf" in result.message
    result = run(_config(tmp_path / "absent", tmp_path / "run"), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_FATAL and "does not exist" in result.message


def test_llm_boundaries_are_asked_for_long_sections(tmp_path: Path, scripted: ScriptedModels):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(" ".join(f"Sentence {i} is about topic {i // 5}." for i in range(60)), encoding="utf-8")
    result = run(_config(docs, tmp_path / "run", llm_boundaries=True, max_chunk_tokens=64), model_provider=scripted, track=False)
    assert scripted.calls["BoundaryOut"] >= 1
    assert result.exit_code == EXIT_OK


@pytest.mark.slow
def test_run_is_logged_to_mlflow(sample_copy: Path, tmp_path: Path):
    import mlflow

    out = tmp_path / "run"
    result = run(_config(sample_copy, out, limit=1), model_provider=ScriptedModels())
    info = result.report["mlflow"]
    assert info["ok"], info
    client = mlflow.MlflowClient(tracking_uri=info["tracking_uri"])
    logged = client.get_run(info["run_id"])
    assert logged.data.metrics["count.chunks"] == result.report["counts"]["chunks"]
    assert logged.data.params["profile"] == "offline"
    assert json.loads((out / "report.json").read_text())["mlflow"]["run_id"] == info["run_id"]
    shutil.rmtree(out)
