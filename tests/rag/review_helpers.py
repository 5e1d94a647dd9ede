"""A small ETL run folder for the review tests, written with the shared schemas (the files an ETL
run writes: chunks, qa_pairs, validation, report, manifest), and a browser launcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from liquid_shared.schemas import Chunk, QAPair, ValidationResult

CHROMIUM = Path(os.environ.get("LIQUID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCRIPT_CHUNK = "Beware: <script>window.__pwned = 1</script> is only text here, as is <b>bold</b>."
PASSAGES = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
    "The tides are caused by the gravitational pull of the moon and, to a lesser degree, the sun.",
    "Sourdough starter is a culture of flour and water that holds wild yeast and lactic acid bacteria.",
    SCRIPT_CHUNK,
]
QUESTIONS = [
    ("When did the Normans give their name to Normandy?", "in the 10th and 11th centuries", True, []),
    ("Who gave their name to Normandy?", "the Normans", True, []),
    ("What causes the tides?", "the gravitational pull of the moon", True, []),
    ("What pulls the tides less than the moon?", "the stars", False, ["not grounded: 0.00 of the answer's words in the chunk"]),
    ("What does a sourdough starter hold?", "wild yeast and lactic acid bacteria", True, []),
    ("What is sourdough starter made of?", "flour and water", False, ["judge: not supported (1/5)"]),
    ("What is shown as text?", "<script>window.__pwned = 1</script>", True, []),
    ("Is bold text bold here?", "no, <b>bold</b> is text", False, ["not grounded: 0.40 of the answer's words in the chunk"]),
]


def write_run_folder(folder: Path, n_copies: int = 1, qa_mode: str = "abstractive") -> Path:
    """A run folder of ``len(QUESTIONS) * n_copies`` pairs over ``len(PASSAGES) * n_copies`` chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks, pairs, verdicts, manifest = [], [], [], []
    for copy in range(n_copies):
        doc_id = f"doc{copy}"
        manifest.append({"doc_id": doc_id, "source": f"docs/sample{copy}.md", "status": "done"})
        ids = []
        for pos, text in enumerate(PASSAGES):
            cid = Chunk.make_id(doc_id, pos, text)
            ids.append(cid)
            chunks.append(Chunk(chunk_id=cid, doc_id=doc_id, text=text, position=pos, metadata={"source": f"docs/sample{copy}.md"}))
        for n, (q, a, valid, reasons) in enumerate(QUESTIONS):
            cid = ids[n // 2]
            question = q if copy == 0 else f"{q[:-1]} (copy {copy})?"
            qa_id = QAPair.make_id(cid, question, a)
            pairs.append(QAPair(qa_id=qa_id, chunk_id=cid, doc_id=doc_id, question=question, answer=a))
            verdicts.append(ValidationResult(qa_id=qa_id, valid=valid, grounded=valid or "judge" in " ".join(reasons),
                                             judge_score=0.8 if valid else 0.2, grounding_score=1.0 if valid else 0.3,
                                             reasons=reasons))
    for name, records in (("chunks.jsonl", chunks), ("qa_pairs.jsonl", pairs), ("validation.jsonl", verdicts)):
        (folder / name).write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    (folder / "report.json").write_text(json.dumps({"run": {"config": {"qa_mode": qa_mode}}}), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({"documents": manifest}), encoding="utf-8")
    return folder


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of ``folder`` with its size and modification time (to show nothing changed)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def launch_browser(playwright):
    """Debian's Chromium through Playwright, or skip with the command that installs it."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (apt-get install -y chromium) "
                    "or set LIQUID_CHROMIUM")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def artefact_dir(name: str) -> Path:
    """Where the browser tests save screenshots: ``results/browser/<name>`` (git-ignored)."""
    root = Path(__file__).resolve().parents[2]
    out = Path(os.environ.get("LIQUID_TEST_ARTEFACTS", root / "results" / "browser")) / name
    out.mkdir(parents=True, exist_ok=True)
    return out
