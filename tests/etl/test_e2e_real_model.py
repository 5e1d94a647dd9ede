"""End to end with the real offline model (SmolLM2-135M through the shared registry).

* the default run over the shipped samples: every output exists, parses against its schema,
  the counts in report.json match the files, every fine-tuning sample passed validation and
  points at an existing chunk, and each model was loaded once (asserted through the registry);
* bad input: each bad file gets a clear per-document error (or is processed), the rest are
  processed and the exit code says "partial";
* kill and resume: the CLI is SIGKILLed at several points and restarted; the final outputs equal
  an uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etl_helpers import REPO, RUN_INDEX_FILES, SAMPLES, run_file, write_text_pdf
from typer.testing import CliRunner

from etl_pipeline import EXIT_OK, EXIT_PARTIAL
from etl_pipeline.run_etl import app
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

pytestmark = pytest.mark.slow

OUTPUT_FILES = (
    "chunks.jsonl",
    "metadata.jsonl",
    "summaries.jsonl",
    "qa_pairs.jsonl",
    "validation.jsonl",
    "ft/train.jsonl",
    "ft/train_alpaca.jsonl",
    "ft/samples.jsonl",
    "index/manifest.json",
    "taxonomy.json",
    "manifest.json",
    "report.json",
    "quality.json",
)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _invoke(args: list[str]):
    """Run the CLI in this process (so the registry can be inspected afterwards)."""
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    from liquid_shared.config import get_settings
    from liquid_shared.models import get_registry

    tmp = tmp_path_factory.mktemp("default_run")
    os.environ["LIQUID_MLFLOW_URI"] = f"sqlite:///{tmp}/mlruns.db"
    get_settings.cache_clear()
    out = tmp / "run"
    loads_before = dict(get_registry().load_counts)
    result = _invoke(["-o", str(out), "--quiet"])  # the default input (data/samples) and settings
    loads = {spec: n - loads_before.get(spec, 0) for spec, n in get_registry().load_counts.items()}
    os.environ.pop("LIQUID_MLFLOW_URI")
    get_settings.cache_clear()
    return out, result, loads


def test_default_run_writes_every_output_and_the_counts_match(default_run):
    out, result, _ = default_run
    assert result.exit_code == EXIT_OK, result.output
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    metadata = list(read_jsonl(out / "metadata.jsonl", ChunkMetadata))
    summaries = list(read_jsonl(out / "summaries.jsonl", Summary))
    qa = list(read_jsonl(out / "qa_pairs.jsonl", QAPair))
    validations = list(read_jsonl(out / "validation.jsonl", ValidationResult))
    samples = list(read_jsonl(out / "ft" / "samples.jsonl", FineTuneSample))
    chat = _lines(out / "ft" / "train.jsonl")
    alpaca = _lines(out / "ft" / "train_alpaca.jsonl")
    rag = RagIndex.load(out)  # the run folder is the index
    index, id_map = rag.dense.index, {"ids": rag.store.ids}
    manifest = json.loads((out / "manifest.json").read_text())

    n_docs = len({p.name for p in SAMPLES.iterdir()}) + 1  # field_notes.jsonl holds two records
    assert counts["documents_done"] == n_docs == len(manifest["documents"])
    assert counts["chunks"] == len(chunks) == len(metadata) == len(summaries) == index.ntotal == len(id_map["ids"])
    assert counts["qa_pairs"] == len(qa) == len(validations)
    assert counts["qa_valid"] == sum(v.valid for v in validations)
    assert counts["ft_samples"] == len(samples) == len(chat) == len(alpaca)
    assert counts["index_vectors"] == index.ntotal
    assert [c.chunk_id for c in chunks] == id_map["ids"] == [m.chunk_id for m in metadata]
    assert all(set(row) == {"messages"} and [m["role"] for m in row["messages"]] == ["system", "user", "assistant"] for row in chat)
    assert all(set(row) == {"instruction", "input", "output"} for row in alpaca)
    assert all(m.tmd and m.tmd.count(".") == 2 for m in metadata)
    stage_calls = report["stages"]
    assert stage_calls["summary"]["llm"] > 0 and stage_calls["qa"]["llm"] > 0
    assert report["tokens"]["output"] > 0
    assert report["mlflow"]["ok"], report["mlflow"]


def test_every_fine_tuning_sample_passed_validation_and_points_at_a_chunk(default_run):
    out, _, _ = default_run
    chunks = {c.chunk_id: c for c in read_jsonl(out / "chunks.jsonl", Chunk)}
    qa = {q.qa_id: q for q in read_jsonl(out / "qa_pairs.jsonl", QAPair)}
    valid = {v.qa_id for v in read_jsonl(out / "validation.jsonl", ValidationResult) if v.valid}
    samples = list(read_jsonl(out / "ft" / "samples.jsonl", FineTuneSample))
    assert samples, "the default run produced no fine-tuning sample at all"
    for sample, chat in zip(samples, _lines(out / "ft" / "train.jsonl"), strict=True):
        assert sample.qa_id in valid
        assert sample.chunk_id == qa[sample.qa_id].chunk_id
        assert sample.chunk_id in chunks
        assert chat == sample.to_chat_json()
        assert chunks[sample.chunk_id].text in chat["messages"][1]["content"]
    assert all(q.chunk_id in chunks for q in qa.values())


def test_only_one_copy_of_each_model_was_loaded(default_run):
    from liquid_shared.models import get_profile, get_registry

    out, _, loads = default_run
    assert loads, "the run loaded no model through the registry"
    # A model an earlier test of this process loaded is reused (0 new loads); none is loaded twice.
    assert all(n <= 1 for n in loads.values()), loads
    assert set(get_profile("offline").distinct_specs()) <= set(get_registry().load_counts)
    report = json.loads((out / "report.json").read_text())
    assert set(report["memory"]["model_loads"].values()) == {1}


def test_bad_inputs_fail_alone_and_the_run_is_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "field_notes.jsonl", docs / "notes.jsonl")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 64)
    pdf = write_text_pdf(tmp_path / "ok.pdf", "Kites", ["A kite flies because wind pushes on its sail."]).read_bytes()
    (docs / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    (docs / "latin1.txt").write_bytes("Les élèves étudient à côté du théâtre, très près de la forêt. ".encode("cp1252") * 4)
    with (docs / "huge.txt").open("w", encoding="utf-8") as fh:
        line = "The archive keeps another ledger of ordinary shipping records from the harbour office.\n"
        while fh.tell() < 20 * 10**6:
            fh.write(line * 1000)
    (docs / "no_files_here").mkdir()
    out = tmp_path / "run"
    result = _invoke([str(docs), "-o", str(out), "--quiet", "--no-track", "--max-chunks-per-doc", "2", "--stages", "summary,qa,judge"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    report = json.loads((out / "report.json").read_text())
    load_errors = {e["source"]: e["error"] for e in report["errors"] if e["stage"] == "load"}
    assert set(load_errors) == {"empty.txt", "binary.txt", "truncated.pdf"}
    assert "empty document" in load_errors["empty.txt"]
    assert "binary" in load_errors["binary.txt"]
    assert "PDF" in load_errors["truncated.pdf"]
    manifest = {d["source"]: d for d in json.loads((out / "manifest.json").read_text())["documents"]}
    for source in ("notes.jsonl#honeybees", "notes.jsonl#volcano", "latin1.txt", "huge.txt"):  # JSONL records by their id field
        assert manifest[source]["status"] == "done", source
    assert manifest["huge.txt"]["counts"]["chunks"] == 2
    warnings = {w["source"]: w["warning"] for w in report["warnings"]}
    assert "truncated" in warnings["huge.txt"]
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    latin = [c for c in chunks if c.metadata["source"] == "latin1.txt"]
    assert latin and "élèves étudient" in latin[0].text


def test_empty_input_folder_is_fatal(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = _invoke([str(tmp_path / "empty"), "-o", str(tmp_path / "run"), "--quiet", "--no-track"])
    assert result.exit_code == 1
    assert "no documents found" in result.output


# --- kill and resume ------------------------------------------------------------------------

KILL_ARGS = ["--concurrency", "1", "--docs-in-flight", "1", "--temperature", "0", "--stages", "metadata,summary,qa,judge", "--quiet", "--no-track"]
COMPARED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl",
            "ft/train.jsonl", "ft/samples.jsonl", "ft/train_alpaca.jsonl", *RUN_INDEX_FILES, "taxonomy.json")


def _cli(input_dir: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "etl_pipeline.run_etl", str(input_dir), "-o", str(out), *KILL_ARGS],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _done_shards(out: Path) -> int:
    docs = out / "docs"
    return len([p for p in docs.iterdir() if not p.name.startswith(".")]) if docs.is_dir() else 0


def _kill_when(proc: subprocess.Popen, condition, what: str) -> None:
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what} (exit {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_runs_resume_to_exactly_the_uninterrupted_outputs(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "field_notes.jsonl", docs)
    shutil.copy(SAMPLES / "photosynthesis.pdf", docs)
    env = {**os.environ, "LIQUID_MLFLOW_URI": f"sqlite:///{tmp_path}/mlruns.db"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "liquid-shared-core"), str(REPO / "liquid-etl-pipeline"), env.get("PYTHONPATH", "")])

    reference = tmp_path / "reference"
    ref = _cli(docs, reference, env)
    assert ref.wait() == EXIT_OK, ref.stderr.read().decode()[-2000:]

    out = tmp_path / "run"
    # 1: during start-up (imports, model loading), before any document is done
    proc = _cli(docs, out, env)
    deadline = time.monotonic() + 3
    _kill_when(proc, lambda: time.monotonic() > deadline, "three seconds passed")
    assert _done_shards(out) == 0
    # 2: right after the first document's shard landed
    proc = _cli(docs, out, env)
    _kill_when(proc, lambda: _done_shards(out) >= 1, "the first document was done")
    # 3: after the second
    proc = _cli(docs, out, env)
    _kill_when(proc, lambda: _done_shards(out) >= 2, "the second document was done")
    # 4: once the merge has begun
    proc = _cli(docs, out, env)
    _kill_when(proc, lambda: (out / "chunks.jsonl").exists(), "the merge began")
    final = _cli(docs, out, env)
    assert final.wait() == EXIT_OK, final.stderr.read().decode()[-2000:]

    for name in COMPARED:
        assert run_file(out, name) == run_file(reference, name), f"{name} differs from the uninterrupted run"
    ids = [q["qa_id"] for q in _lines(out / "qa_pairs.jsonl")]
    assert len(ids) == len(set(ids))
    chunk_ids = [c["chunk_id"] for c in _lines(out / "chunks.jsonl")]
    assert len(chunk_ids) == len(set(chunk_ids)) > 0
    assert not [p for p in (out / "docs").iterdir() if p.name.startswith(".")], "temporary shard folders were left behind"


def test_the_prefix_cache_changes_no_record(default_run, tmp_path: Path):
    """The default run reuses each stage's system turn from the prefix cache (hits counted); a run
    with the cache off (``--prefix-cache-mb 0``) writes the same records for the same documents
    (fp32, greedy)."""
    from liquid_shared.models import get_profile, get_registry

    out, result, _ = default_run
    assert result.exit_code == EXIT_OK, result.output
    spec = get_profile("offline").spec_for("qa")
    report = get_registry().get(spec).prefix_cache.report()
    assert report["hits"] > 0 and report["tokens_saved"] > 0 and report["bytes_held"] <= report["max_bytes"]

    off = tmp_path / "off"
    res = _invoke(["-o", str(off), "--quiet", "--limit", "2", "--prefix-cache-mb", "0"])
    assert res.exit_code == EXIT_OK, res.output
    assert get_registry().get(spec.model_copy(update={"prefix_cache_mb": 0.0})).prefix_cache is None
    ids = {c.chunk_id for c in read_jsonl(off / "chunks.jsonl", Chunk)}
    assert ids
    for name in ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl"):
        cached = [r for r in _lines(out / name) if r["chunk_id"] in ids]
        assert _lines(off / name) == cached, name
    qa_ids = {r["qa_id"] for r in _lines(off / "qa_pairs.jsonl")}
    assert _lines(off / "validation.jsonl") == [r for r in _lines(out / "validation.jsonl") if r["qa_id"] in qa_ids]


def test_passage_first_reuses_each_passage_across_its_stages_and_changes_no_record(tmp_path: Path):
    """The passage-first layout: a chunk's passage (with the common system text) is one cached
    prefix for all of its stages, so each chunk's passage is prefilled at most once; a run with the
    cache off writes the same records (fp32, greedy)."""
    from liquid_shared.models import get_profile, get_registry

    spec = get_profile("offline").spec_for("qa")
    on, off = tmp_path / "on", tmp_path / "off"
    before = get_registry().get(spec).prefix_cache.report() if spec in get_registry().loaded_specs() else None
    res = _invoke(["-o", str(on), "--quiet", "--limit", "2", "--prompt-layout", "passage-first"])
    assert res.exit_code == EXIT_OK, res.output
    after = get_registry().get(spec).prefix_cache.report()
    lookups = after["lookups"] - (before["lookups"] if before else 0)
    hits = after["hits"] - (before["hits"] if before else 0)
    chunks = len(_lines(on / "chunks.jsonl"))
    calls = sum(s["calls"] for s in json.loads((on / "report.json").read_text())["stages"].values())
    assert lookups == calls > 2 * chunks  # every request named its system turn (the passage) as its prefix
    assert lookups - hits <= chunks  # ... and each chunk's passage was prefilled at most once

    res = _invoke(["-o", str(off), "--quiet", "--limit", "2", "--prompt-layout", "passage-first",
                   "--prefix-cache-mb", "0"])
    assert res.exit_code == EXIT_OK, res.output
    for name in ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl"):
        assert _lines(off / name) == _lines(on / name), name
