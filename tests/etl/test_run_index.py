"""The run folder is the index: search it straight after the ETL, and a re-run over a changed input
folder updates it (only changed or new documents embedded; the result equals a full rebuild)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from etl_helpers import ScriptedModels
from typer.testing import CliRunner

from etl_pipeline import EXIT_OK, EtlConfig, run
from etl_pipeline import runner as etl_runner
from liquid_shared.schemas import Chunk, read_jsonl
from rag_runtime import RagIndex, build_index
from rag_runtime.cli import app as rag_app

QUERIES = ["Why does the sea rise and fall?", "How do you keep a sourdough starter alive?", "owls hunting at night"]


def _config(input_dir: Path, out: Path) -> EtlConfig:
    return EtlConfig(input_dir=input_dir, output_dir=out, qa_mode="abstractive", concurrency=4)


def _results(index: RagIndex):
    return {mode: [[(index.store.ids[int(r)], float(s)) for r, s in zip(rows, scores, strict=True)]
                   for rows, scores in index.retriever(mode).rank(QUERIES, k=6)]
            for mode in ("bm25", "dense")}


@pytest.mark.slow
def test_search_the_run_folder_then_update_it_by_re_running(sample_copy: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    assert run(_config(sample_copy, out), model_provider=ScriptedModels(), track=False).exit_code == EXIT_OK
    searched = CliRunner().invoke(rag_app, ["search", "Why does the sea rise and fall?", "--index", str(out), "--json", "--k", "3"])
    assert searched.exit_code == 0, searched.output
    hits = [json.loads(line) for line in searched.output.splitlines() if line.startswith("{")]
    assert hits and hits[0]["metadata"]["source"] == "tides.md"

    before = {c.chunk_id: c for c in read_jsonl(out / "chunks.jsonl", Chunk)}
    tides = (sample_copy / "tides.md").read_text(encoding="utf-8")
    (sample_copy / "tides.md").write_text(tides + "\n\nSpring tides come twice a month, at new and full moon.\n", encoding="utf-8")
    (sample_copy / "bicycle_chain.rst").unlink()
    (sample_copy / "owls.txt").write_text("Owls hunt at night. Their hearing finds mice under the snow.", encoding="utf-8")

    encoded: list[str] = []
    real = etl_runner._make_encoder

    def counting_encoder():
        embedder, encode = real()

        async def counted(texts):
            encoded.extend(texts)
            return await encode(texts)

        return embedder, counted

    monkeypatch.setattr(etl_runner, "_make_encoder", counting_encoder)
    result = run(_config(sample_copy, out), model_provider=ScriptedModels(), track=False)
    assert result.exit_code == EXIT_OK and result.report["this_run"]["processed"] == 2
    after = list(read_jsonl(out / "chunks.jsonl", Chunk))
    redone = [c for c in after if c.metadata["source"] in ("tides.md", "owls.txt")]
    untouched = [c for c in after if c.metadata["source"] not in ("tides.md", "owls.txt")]
    assert {c.text for c in redone} <= set(encoded)  # the changed and the new document's chunks were embedded
    assert not {c.text for c in untouched} & set(encoded)  # the unchanged ones were not
    update = result.report["index_update"]
    assert update["added"] > 0 and update["removed"] > 0 and update["embedded"] == 0  # the index write encodes nothing
    index = RagIndex.load(out)
    assert index.store.ids == [c.chunk_id for c in after]
    assert not any(c.metadata["source"] == "bicycle_chain.rst" for c in index.store.docs)
    assert set(before) - set(index.store.ids)
    # equal to a full rebuild of the same run folder (the shared, cached encoder): ids and scores
    rebuilt = build_index(out, tmp_path / "rebuilt")
    assert _results(index) == _results(rebuilt)
