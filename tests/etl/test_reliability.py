"""The ETL never mixes, loses or crashes on its own outputs.

Each test drives the real runner, shards, loaders and merge on a tiny corpus; the LLM is the
scripted ``FunctionModel`` (these are tests of bookkeeping, not of what a model writes), the
embedder is the real MiniLM. Every test here failed on the code before the fix it covers.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from etl_helpers import REPO, RUN_INDEX_FILES, ScriptedModels, run_file

from etl_pipeline import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EtlConfig, run
from etl_pipeline.chunking import build_chunks
from etl_pipeline.loaders import discover_sources, load_document
from liquid_shared.schemas import Chunk, read_jsonl

COMPARED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl",
            "ft/train.jsonl", *RUN_INDEX_FILES, "taxonomy.json")


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "owls.txt").write_text(
        "Owls hunt at night. Their soft feathers make their flight almost silent, and their ears locate prey in the dark.",
        encoding="utf-8",
    )
    (folder / "tides.md").write_text(
        "# Tides\n\nTides rise and fall twice a day. The Moon's gravity pulls the oceans into two bulges.\n", encoding="utf-8"
    )
    return folder


def _run(input_dir: Path, out: Path, models: ScriptedModels | None = None, **kw):
    kw.setdefault("concurrency", 4)
    return run(EtlConfig(input_dir=input_dir, output_dir=out, **kw), model_provider=models or ScriptedModels(), track=False)


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: run_file(out, name) for name in COMPARED}


# 1 -------------------------------------------------------------------------------------------

def test_fingerprint_covers_models_dtype_overrides_embedding_and_code(monkeypatch: pytest.MonkeyPatch):
    from liquid_shared.config import get_settings

    base = EtlConfig()
    settings = base.fingerprint_settings()
    assert settings["models"]["qa"]["spec"]["model"] == "offline:smollm2-135m-instruct"
    assert settings["models"]["qa"]["dtype"] == "float32"  # resolved, not just the (empty) request
    assert settings["embedding_model"].lower().endswith("all-minilm-l6-v2") and len(settings["code_version"]) == 16
    prints = {base.fingerprint()}
    prints.add(EtlConfig(role_models={"qa": "LiquidAI/LFM2-350M"}).fingerprint())
    # the old name of role_models is still read, with the same meaning
    assert EtlConfig(stage_models={"qa": "LiquidAI/LFM2-350M"}).fingerprint() in prints
    prints.add(EtlConfig(profile="lfm2").fingerprint())
    prints.add(EtlConfig(prompt_layout="passage-first").fingerprint())  # other prompts, other records
    monkeypatch.setenv("LIQUID_DTYPE", "bf16")
    get_settings.cache_clear()
    prints.add(EtlConfig().fingerprint())
    monkeypatch.setenv("LIQUID_DTYPE", "int8")  # fp32 activations, but int8 weights: other records
    get_settings.cache_clear()
    assert EtlConfig().fingerprint_settings()["models"]["qa"]["dtype"] == "int8"
    prints.add(EtlConfig().fingerprint())
    monkeypatch.delenv("LIQUID_DTYPE")
    get_settings.cache_clear()
    assert EtlConfig().fingerprint() == base.fingerprint()
    assert len(prints) == 6
    # speed-only knobs do not count (nor does the running batch's size, LIQUID_MAX_BATCH_SIZE)
    assert EtlConfig(concurrency=3, chunk_window=5, docs_in_flight=2).fingerprint() == base.fingerprint()
    monkeypatch.setenv("LIQUID_MAX_BATCH_SIZE", "7")
    get_settings.cache_clear()
    assert EtlConfig().fingerprint() == base.fingerprint()
    monkeypatch.delenv("LIQUID_MAX_BATCH_SIZE")
    get_settings.cache_clear()


def test_code_change_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch):
    from etl_pipeline import config as config_module

    before = EtlConfig().fingerprint()
    config_module.code_version.cache_clear()
    config_module._fingerprint_settings.cache_clear()
    real = Path.read_bytes

    def edited(self: Path) -> bytes:
        data = real(self)
        return data + b"\n# edited\n" if self.name == "tmd.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    try:
        assert EtlConfig().fingerprint() != before
    finally:
        monkeypatch.undo()
        config_module.code_version.cache_clear()
        config_module._fingerprint_settings.cache_clear()
    assert EtlConfig().fingerprint() == before


@pytest.mark.slow
def test_a_changed_dtype_redoes_documents_and_says_which_setting_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from liquid_shared.config import get_settings

    docs, out = _corpus(tmp_path / "docs"), tmp_path / "run"
    assert _run(docs, out).exit_code == EXIT_OK
    monkeypatch.setenv("LIQUID_DTYPE", "bf16")
    get_settings.cache_clear()
    again = ScriptedModels()
    result = _run(docs, out, again)
    assert result.report["this_run"]["processed"] == 2, "shards of the fp32 run were reused for a bf16 run"
    assert again.calls["SummaryOut"] > 0
    changed = result.report["settings_changed"]
    assert changed["documents"] == 2
    assert "models.qa.dtype" in changed["settings"] and changed["settings"]["models.qa.dtype"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert {d["fingerprint"] for d in manifest["documents"]} == {result.report["run"]["fingerprint"]}


# 2 -------------------------------------------------------------------------------------------

def test_damaged_shards_are_moved_aside_and_their_documents_redone(tmp_path: Path):
    docs, out = _corpus(tmp_path / "docs"), tmp_path / "run"
    assert _run(docs, out).exit_code == EXIT_OK
    reference = _outputs(out)
    shards = sorted(p for p in (out / "docs").iterdir() if not p.name.startswith("."))
    truncated = shards[0] / "chunks.jsonl"
    truncated.write_bytes(truncated.read_bytes()[:-25])  # a cut-off last line
    (shards[1] / "embeddings.npy").write_bytes((shards[1] / "embeddings.npy").read_bytes()[:100])
    for attempt in range(2):  # the repair happens once; the run after it is clean
        result = _run(docs, out)
        assert result.exit_code == EXIT_OK, result.report["errors"]
        assert _outputs(out) == reference
        repaired = result.report["repaired_shards"]
        if attempt == 0:
            assert len(repaired) == 2 and result.report["this_run"]["processed"] == 2
            reasons = " ".join(r["reason"] for r in repaired)
            assert "chunks.jsonl is damaged" in reasons and "embeddings.npy is damaged" in reasons
            for r in repaired:
                assert (out / r["moved_to"] / "REASON.txt").is_file()
        else:
            assert repaired == [] and result.report["this_run"]["skipped_unchanged"] == 2


def test_an_unparsable_record_json_is_repaired_too(tmp_path: Path):
    docs, out = _corpus(tmp_path / "docs"), tmp_path / "run"
    _run(docs, out)
    shard = next(p for p in (out / "docs").iterdir() if not p.name.startswith("."))
    (shard / "record.json").write_text('{"doc_id": "', encoding="utf-8")
    result = _run(docs, out)
    assert result.exit_code == EXIT_OK
    assert [r["doc_id"] for r in result.report["repaired_shards"]] == [shard.name]
    assert "record.json" in result.report["repaired_shards"][0]["reason"]


# 3 -------------------------------------------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from etl_pipeline.run_folder import hold_output_lock
with hold_output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_locked_output_folder_stops_with_a_clear_message(tmp_path: Path):
    docs, out = _corpus(tmp_path / "docs"), tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-shared-core"), str(REPO / "liquid-etl-pipeline"), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _run(docs, out)
        assert result.exit_code == EXIT_FATAL
        assert "in use by another ETL run" in result.message and f"pid {holder.pid}" in result.message
        assert not (out / "docs").exists(), "the second run touched the folder"
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed run: its lock must not outlive it
        holder.wait()
    result = _run(docs, out)
    assert result.exit_code == EXIT_OK


# 4 -------------------------------------------------------------------------------------------

def test_an_output_folder_of_another_input_folder_is_refused_unless_forced(tmp_path: Path):
    first, out = _corpus(tmp_path / "first"), tmp_path / "run"
    assert _run(first, out).exit_code == EXIT_OK
    shards_before = sorted(p.name for p in (out / "docs").iterdir())
    other = tmp_path / "other"
    other.mkdir()
    (other / "bees.txt").write_text("Bees dance to tell each other where the flowers are.", encoding="utf-8")
    result = _run(other, out)
    assert result.exit_code == EXIT_FATAL
    assert str(first.resolve()) in result.message and "--force" in result.message
    assert sorted(p.name for p in (out / "docs").iterdir()) == shards_before, "the refused run deleted shards"
    forced = _run(other, out, force=True)
    assert forced.exit_code == EXIT_OK
    assert forced.report["replaced_input_dir"] == str(first.resolve())
    assert {c.metadata["source"] for c in read_jsonl(out / "chunks.jsonl", Chunk)} == {"bees.txt"}


# 5 -------------------------------------------------------------------------------------------

def test_symlink_policy_refuses_links_out_and_records_every_skip(tmp_path: Path):
    docs = _corpus(tmp_path / "docs")
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("The launch code is swordfish. Nobody outside may read it.", encoding="utf-8")
    (docs / "leak.txt").symlink_to(secret)
    (docs / "outside_dir").symlink_to(secret.parent, target_is_directory=True)
    (docs / "alias.txt").symlink_to(docs / "owls.txt")
    (docs / "sub").mkdir()
    (docs / "sub" / "bees.txt").write_text("Bees dance to show where flowers are.", encoding="utf-8")
    (docs / "sub" / "up").symlink_to(docs, target_is_directory=True)  # a loop through a parent
    (docs / "loop.txt").symlink_to(docs / "loop.txt")
    (docs / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    result = _run(docs, tmp_path / "run")
    assert result.exit_code == EXIT_PARTIAL
    skipped = {s["source"]: s for s in result.report["skipped_sources"]}
    assert set(skipped) == {"leak.txt", "outside_dir", "alias.txt", "sub/up", "loop.txt", "dangling.md"}
    assert "outside the input folder" in skipped["leak.txt"]["reason"] and skipped["leak.txt"]["refused"]
    assert "outside the input folder" in skipped["outside_dir"]["reason"]
    assert "loop" in skipped["loop.txt"]["reason"] and "loop" in skipped["sub/up"]["reason"]
    assert "broken symlink" in skipped["dangling.md"]["reason"]
    assert not skipped["alias.txt"]["refused"] and "inside the input folder" in skipped["alias.txt"]["reason"]
    errors = {e["source"] for e in result.report["errors"] if e["stage"] == "discover"}
    assert errors == {"leak.txt", "outside_dir", "sub/up", "loop.txt", "dangling.md"}
    texts = " ".join(c.text for c in read_jsonl(tmp_path / "run" / "chunks.jsonl", Chunk))
    assert "swordfish" not in texts
    assert {c.metadata["source"] for c in read_jsonl(tmp_path / "run" / "chunks.jsonl", Chunk)} == {"owls.txt", "tides.md", "sub/bees.txt"}


# 6 -------------------------------------------------------------------------------------------

class _CountingFile(io.RawIOBase):
    def __init__(self, path: Path, counter: list[int]):
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._counter = counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        self._counter[0] += n or 0
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_jsonl_records_are_read_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    records = [json.dumps({"id": f"r{i}", "text": f"Record number {i} talks about owls and tides at length."}) for i in range(400)]
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(records) + "\n", encoding="utf-8")
    read = [0]
    real_open = Path.open

    def counting_open(self: Path, mode: str = "r", *args, **kwargs):
        if self == path and "b" in mode:
            return io.BufferedReader(_CountingFile(self, read))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    items = discover_sources(tmp_path)
    for item in items:
        load_document(item, max_bytes=10**8)
    size = path.stat().st_size
    # discovery reads the file once; loading reads each record's own bytes (plus buffer slack)
    assert read[0] <= 2 * size + len(items) * 8192, f"read {read[0]} bytes for a {size}-byte file: not one pass"


def test_jsonl_ids_come_from_the_record_so_inserting_a_line_redoes_only_it(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = [json.dumps({"id": "owl", "text": "Owls hunt at night with silent flight."}),
             json.dumps({"text": "Tides rise and fall twice a day."}),
             json.dumps({"id": 7, "text": "Bees dance to show where flowers are."})]
    (docs / "notes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    _run(docs, out)
    before = {d["source"]: d["doc_id"] for d in json.loads((out / "manifest.json").read_text())["documents"]}
    assert "notes.jsonl#owl" in before and "notes.jsonl#7" in before
    assert any(s.startswith("notes.jsonl#sha-") for s in before)
    inserted = [json.dumps({"id": "moth", "text": "Moths fly towards lamps at night."}), *lines]
    (docs / "notes.jsonl").write_text("\n".join(inserted) + "\n", encoding="utf-8")
    again = ScriptedModels()
    result = _run(docs, out, again)
    assert result.report["this_run"]["processed"] == 1 and result.report["this_run"]["skipped_unchanged"] == 3
    after = {d["source"]: d["doc_id"] for d in json.loads((out / "manifest.json").read_text())["documents"]}
    assert all(after[s] == before[s] for s in before)


# 7/8 -----------------------------------------------------------------------------------------

def _book(n_chapters: int = 34) -> str:
    parts = []
    for c in range(n_chapters):
        parts.append(f"# Chapter {c + 1}\n")
        for p in range(12):
            parts.append(" ".join(
                f"In chapter {c + 1}, paragraph {p + 1}, sentence {s + 1} explains how markets set the price of good {c * 100 + p * 10 + s}."
                for s in range(4)
            ) + "\n")
    return "\n".join(parts)


def test_a_long_document_is_kept_whole_by_default_and_a_cap_is_named(tmp_path: Path):
    text = _book()
    assert len(text) > 132_404  # longer than the longest textbook chapter measured (132,404 chars)
    (tmp_path / "book.md").write_text(text, encoding="utf-8")
    item = discover_sources(tmp_path)[0]
    doc = load_document(item, max_bytes=10**8)
    config = EtlConfig(input_dir=tmp_path)
    result = build_chunks(doc, max_tokens=config.max_chunk_tokens, min_tokens=config.min_chunk_tokens, max_chunks=config.max_chunks_per_doc)
    assert not result.truncated and result.warnings == []
    assert result.chunks[-1].end_char == len(doc.text.rstrip())
    kept = sum(c.end_char - c.start_char for c in result.chunks)
    assert kept >= 0.98 * len(doc.text)  # only the blank lines between chunks are not inside a chunk
    capped = build_chunks(doc, max_tokens=160, min_tokens=24, max_chunks=48)
    assert capped.truncated and "max_chunks_per_doc" in " ".join(capped.warnings)


@pytest.mark.slow
def test_long_documents_go_through_the_stages_in_bounded_windows(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "book.md").write_text(_book(3), encoding="utf-8")
    # requests wait (up to 0.3 s) for 8 of their stage to be in flight, as a batching model would
    windowed = ScriptedModels(hold_until=8, hold_seconds=0.3)
    result = _run(docs, tmp_path / "windowed", windowed, chunk_window=4, concurrency=64)
    n_chunks = result.report["counts"]["chunks"]
    assert n_chunks >= 12
    assert result.report["this_run"]["most_chunks_in_flight_per_document"] == 4
    assert max(windowed.max_stage_in_flight.values()) <= 4 * 2  # a window's chunks (the judge: 2 pairs each)
    assert windowed.max_stage_in_flight["GroundedMetadataOut"] <= 4
    whole = ScriptedModels(hold_until=8, hold_seconds=0.3)
    wide = _run(docs, tmp_path / "whole", whole, chunk_window=1000, concurrency=64)
    assert wide.report["this_run"]["most_chunks_in_flight_per_document"] == n_chunks
    assert whole.max_stage_in_flight["GroundedMetadataOut"] > 4  # without windows every chunk is in flight at once
    assert _outputs(tmp_path / "windowed") == _outputs(tmp_path / "whole")  # windows change memory, not records


def test_run_summary_names_a_cap_when_one_is_asked_for(tmp_path: Path):
    from rich.console import Console

    from etl_pipeline.progress import summary_table

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "book.md").write_text(_book(2), encoding="utf-8")
    result = _run(docs, tmp_path / "run", max_chunks_per_doc=3)
    assert result.report["counts"]["chunks"] == 3
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result.report))
    rendered = console.file.getvalue()
    assert "truncated" in rendered and "max_chunks_per_doc=3" in rendered



# a killed merge's temporaries ----------------------------------------------------------------

_KILLED_MERGE = """
import os, signal, sys
from pathlib import Path
from liquid_shared.atomic import atomic_file, atomic_path
out = Path(sys.argv[1])
# what a merge SIGKILLed mid-write leaves: its atomic helpers' temporaries beside the files it writes
with atomic_file(out / "qa_pairs.jsonl", "w") as a, atomic_file(out / "ft" / "train.jsonl", "w") as b, \\
        atomic_path(out / "index" / "manifest.json") as c:
    a.write('{"half": '); b.write('{"messages": ['); a.flush(); b.flush(); c.write_bytes(b"IxF")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_removes_the_temporaries_of_a_killed_merge(tmp_path: Path):
    docs, out = _corpus(tmp_path / "docs"), tmp_path / "run"
    assert _run(docs, out).exit_code == EXIT_OK
    reference = _outputs(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-shared-core"), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", _KILLED_MERGE, str(out)], env=env, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    stale = sorted(str(p.relative_to(out)) for p in out.rglob(".*") if p.name not in (".etl.lock", ".index.lock"))
    assert len(stale) == 3 and {Path(s).parent.name for s in stale} == {"", "ft", "index"}, stale
    result = _run(docs, out)  # nothing to redo: only the merge runs
    assert result.exit_code == EXIT_OK and result.report["this_run"]["processed"] == 0
    assert sorted(result.report["removed_temporaries"]) == stale
    assert [p for p in out.rglob(".*") if p.name not in (".etl.lock", ".index.lock")] == []
    assert _outputs(out) == reference
