"""A hostile corpus next to good documents: every bad file is named with its reason, every good one is complete.

The corpus: an empty file, binary bytes renamed ``.txt``, a truncated PDF, a text with invalid
UTF-8 (Latin-1 bytes: decoded by detection and processed, with a warning), a 20 MB text (generated here, refused by a 16 MB size limit), a gzip bomb renamed
``.html``, a symlink loop, a file unreadable by permissions (only when the tests do not run as
root: root reads a mode-000 file anyway) and a JSONL file with one malformed line, next to two
good text files and the good records of the JSONL. The LLM is the scripted ``FunctionModel``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from etl_helpers import SAMPLES, ScriptedModels

from etl_pipeline import EXIT_PARTIAL, EtlConfig, run
from liquid_shared.schemas import Chunk, read_jsonl

GOOD = {
    "owls.txt": "Owls hunt at night. Their soft feathers make their flight almost silent.\n\nTheir ears find prey in the dark.",
    "tides.md": "# Tides\n\nTides rise and fall twice a day. The Moon's gravity pulls the oceans into two bulges.\n",
}


def _hostile_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; returns {bad source: a word its reason must contain}."""
    folder.mkdir()
    for name, text in GOOD.items():
        (folder / name).write_text(text, encoding="utf-8")
    # not valid UTF-8 (Latin-1 bytes): decoded by detection, with a warning, not dropped
    (folder / "invalid_utf8.txt").write_bytes("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e is a French dessert. ".encode("latin-1") * 20)
    bad = {}
    (folder / "empty.txt").write_bytes(b"")
    bad["empty.txt"] = "empty"
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 64)
    bad["binary.txt"] = "binary"
    pdf = (SAMPLES / "photosynthesis.pdf").read_bytes()
    (folder / "truncated.pdf").write_bytes(pdf[: len(pdf) // 3])
    bad["truncated.pdf"] = "PDF"
    (folder / "huge.txt").write_bytes(b"All work and no play makes a dull text file. " * (20_000_000 // 46 + 1))
    bad["huge.txt"] = "MB limit"
    (folder / "bomb.html").write_bytes(gzip.compress(b"\0" * 50_000_000, compresslevel=9))
    bad["bomb.html"] = "binary"
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    bad["loop.txt"] = "loop"
    lines = [json.dumps({"id": "moth", "text": "Moths fly towards lamps at night."}), '{"id": "broken", "text": "cut off',
             json.dumps({"id": "bee", "text": "Bees dance to show where the flowers are."})]
    (folder / "notes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad_line = next(s for s in _sources(folder) if s.startswith("notes.jsonl#sha-"))
    bad[bad_line] = "not a valid JSON record"
    if os.geteuid() != 0:
        locked = folder / "locked.txt"
        locked.write_text("You cannot read me.", encoding="utf-8")
        locked.chmod(0)
        bad["locked.txt"] = "cannot read"
    return bad


def _sources(folder: Path) -> list[str]:
    from etl_pipeline.loaders import discover_sources

    return [it.source for it in discover_sources(folder)]


@pytest.mark.slow
def test_hostile_corpus_names_every_bad_file_and_completes_every_good_one(tmp_path: Path):
    docs = tmp_path / "docs"
    bad = _hostile_corpus(docs)
    out = tmp_path / "run"
    result = run(EtlConfig(input_dir=docs, output_dir=out, max_file_mb=16, concurrency=4), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_PARTIAL
    report = json.loads((out / "report.json").read_text())
    named = {e["source"]: e["error"] for e in report["errors"] if e["stage"] in ("load", "discover")}
    for source, word in bad.items():
        assert source in named, f"{source} is not named in report.json errors"
        assert word.lower() in named[source].lower(), f"{source}: {named[source]!r} does not say {word!r}"
    assert set(named) == set(bad), f"good files reported as bad: {sorted(set(named) - set(bad))}"
    # the invalid-UTF-8 file is readable text in another encoding: processed, with a warning naming it
    warnings = {w["source"]: w["warning"] for w in report["warnings"]}
    assert "not UTF-8" in warnings["invalid_utf8.txt"]
    chunks = list(read_jsonl(out / "chunks.jsonl", Chunk))
    by_source: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_source.setdefault(c.metadata["source"], []).append(c)
    assert set(by_source) == {*GOOD, "invalid_utf8.txt", "notes.jsonl#moth", "notes.jsonl#bee"}
    assert "Café crème brûlée" in " ".join(c.text for c in by_source["invalid_utf8.txt"])
    for name, text in GOOD.items():  # every line of body text is in the chunks (headings become section paths)
        kept = " ".join(" ".join(c.text.split()) for c in by_source[name])
        body = " ".join(" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#"))
        assert kept == body, f"{name} is not complete"
    manifest = {d["source"]: d["status"] for d in json.loads((out / "manifest.json").read_text())["documents"]}
    assert all(manifest[s] == "done" for s in by_source)
    assert report["documents"]["failed"] + report["documents"]["refused"] == len(bad)

