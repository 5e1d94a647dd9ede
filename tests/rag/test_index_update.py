"""Updating an index in place: only new or changed texts are embedded, the result equals a rebuild,
and a save killed mid-way leaves the previous version loadable (real MiniLM, real FAISS, bm25s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liquid_shared.embeddings import Embedder
from rag_runtime import IndexedDoc, RagIndex
from rag_runtime.index import data_folder

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["Why did the central bank raise interest rates?", "How do plants turn light into sugar?",
           "tides and the moon", "a new library opened downtown"]


class CountingEmbedder:
    """A real ``Embedder``; counts the texts that reach the model (cache misses)."""

    def __init__(self, cache):
        self.inner = Embedder(cache=cache)
        self.dim, self.encoded = self.inner.dim, 0
        real = self.inner._encode

        def counted(texts, show_progress):
            self.encoded += len(texts)
            return real(texts, show_progress)

        self.inner._encode = counted

    def encode(self, texts, **kwargs):
        return self.inner.encode(texts, **kwargs)


def _edited(corpus: list[IndexedDoc]) -> list[IndexedDoc]:
    """One document changed, one deleted, one added."""
    docs = [d.model_copy(deep=True) for d in corpus]
    docs[3] = docs[3].model_copy(update={"text": docs[3].text + " The figures were revised in March."})
    del docs[10]
    docs.append(IndexedDoc(id="news-1", text="A new library opened downtown with a reading room for children.",
                           metadata={"source": "docs/news.md", "tags": [], "categories": ["news"], "tmd": None}))
    return docs


def _results(index: RagIndex):
    return {mode: [[(index.store.ids[int(r)], float(s)) for r, s in zip(rows, scores, strict=True)]
                   for rows, scores in index.retriever(mode).rank(QUERIES, k=8)]
            for mode in ("bm25", "dense")}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    return CountingEmbedder(tmp_path_factory.mktemp("embedding-cache"))


@pytest.mark.slow
def test_refresh_embeds_only_changed_and_new_documents_and_equals_a_rebuild(corpus, warm, tmp_path):
    index = RagIndex.build(corpus, embedder=warm)
    index.save(tmp_path / "index")
    before = _results(RagIndex.load(tmp_path / "index"))
    fresh = CountingEmbedder(False)
    loaded = RagIndex.load(tmp_path / "index")
    report = loaded.refresh(_edited(corpus), embedder=fresh)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, len(corpus) - 2)
    assert report.embedded == fresh.encoded == 2
    loaded.save(tmp_path / "index")
    updated = _results(RagIndex.load(tmp_path / "index"))
    assert updated != before
    # a full rebuild as build-index and the ETL do it (the shared, cached encoder): identical ids and scores
    warm.encoded = 0
    rebuilt = RagIndex.build(_edited(corpus), embedder=warm)
    assert warm.encoded == 2  # the cache knew every unchanged text
    assert updated == _results(rebuilt)
    # a rebuild from a cold cache re-encodes everything in other batches: same ids, scores within float noise
    cold = _results(RagIndex.build(_edited(corpus), embedder=CountingEmbedder(False)))
    for mode in cold:
        assert [[i for i, _ in q] for q in cold[mode]] == [[i for i, _ in q] for q in updated[mode]]
        assert np.allclose([s for q in cold[mode] for _, s in q], [s for q in updated[mode] for _, s in q], atol=1e-5)


def test_add_and_delete_encode_only_what_is_new(corpus, warm):
    index = RagIndex.build(corpus, embedder=warm)
    fresh = CountingEmbedder(False)
    new = IndexedDoc(id="extra", text="Owls hunt at night using their hearing.", metadata={"source": "docs/owls.md"})
    assert index.add([new], embedder=fresh).embedded == 1 == fresh.encoded
    assert index.store.ids[-1] == "extra" and index.dense.index.ntotal == len(corpus) + 1
    assert index.retriever("dense").search("owls hunting at night", 1)[0].id == "extra"
    report = index.delete(["extra", corpus[0].id])
    assert report.removed == 2 and report.embedded == 0 and fresh.encoded == 1
    assert index.store.ids == [d.id for d in corpus[1:]]
    with pytest.raises(ValueError, match="already in the index"):
        index.add([corpus[1]])
    with pytest.raises(KeyError, match="not in the index"):
        index.delete(["no-such-doc"])


def test_each_save_is_a_new_version_named_by_the_manifest(corpus, warm, tmp_path):
    folder = RagIndex.build(corpus, embedder=warm).save(tmp_path / "index")
    first = json.loads((folder / "manifest.json").read_text())
    index = RagIndex.load(folder)
    index.delete([corpus[0].id])
    index.save(folder)
    second = json.loads((folder / "manifest.json").read_text())
    assert second["generation"] == first["generation"] + 1 and second["data"] != first["data"]
    assert data_folder(folder) == folder / second["data"] and (folder / first["data"]).is_dir()  # kept one save longer
    index.delete([corpus[1].id])
    index.save(folder)
    versions = sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
    assert first["data"] not in versions and len(versions) == 2


_UPDATE = """
import os, sys, time, json
from pathlib import Path
from rag_runtime import IndexedDoc, RagIndex
from rag_runtime import index_versions
from rag_runtime.bm25 import Bm25Retriever
folder, docs_file, stop_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def stop(real):
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs) if stop_at == "fsync" else None
        print("STOP", flush=True)
        time.sleep(600)
        return result
    return wrapper

if stop_at == "fsync":  # every file of the new version written, the manifest not yet switched
    index_versions.fsync_tree = stop(index_versions.fsync_tree)
elif stop_at == "bm25":  # docs.jsonl of the new version written, its BM25 files not
    Bm25Retriever.save = stop(Bm25Retriever.save)
docs = [IndexedDoc.model_validate_json(line) for line in docs_file.read_text().splitlines()]
index = RagIndex.load(folder, with_dense=False)
index.refresh(docs)
index.save(folder)
print("DONE", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", ["fsync", "bm25"])
def test_a_save_killed_mid_way_leaves_the_old_version_and_a_rerun_finishes(corpus, tmp_path, stop_at):
    folder = RagIndex.build(corpus, with_dense=False).save(tmp_path / "index")
    before = [[h.id for h in q] for q in RagIndex.load(folder).bm25.search_many(QUERIES, 5)]
    manifest = (folder / "manifest.json").read_bytes()
    docs_file = tmp_path / "docs.jsonl"
    docs_file.write_text("".join(d.model_dump_json() + "\n" for d in _edited(corpus)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-rag-runtime"), str(REPO / "liquid-shared-core"),
                                                        os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _UPDATE, str(folder), str(docs_file), stop_at],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "STOP"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert (folder / "manifest.json").read_bytes() == manifest
    assert len([p for p in folder.iterdir() if p.name.startswith("v")]) == 2  # the old version and the half one
    old = RagIndex.load(folder)
    assert [[h.id for h in q] for q in old.bm25.search_many(QUERIES, 5)] == before and len(old.store) == len(corpus)
    rerun = subprocess.run([sys.executable, "-c", _UPDATE, str(folder), str(docs_file), "none"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0 and rerun.stdout.strip() == "DONE", rerun.stderr
    new = RagIndex.load(folder)
    assert new.store.ids == [d.id for d in _edited(corpus)]
    assert [[h.id for h in q] for q in new.bm25.search_many(QUERIES, 5)] == \
           [[h.id for h in q] for q in RagIndex.build(_edited(corpus), with_dense=False).bm25.search_many(QUERIES, 5)]
    versions = sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
    assert data_folder(folder).name in versions and len(versions) == 2  # the half-written one was swept


def test_an_old_etl_run_folder_gets_a_clear_error(tmp_path):
    from rag_runtime import IndexFormatError

    run = tmp_path / "run"
    (run / "index").mkdir(parents=True)
    (run / "chunks.jsonl").write_text("")
    (run / "manifest.json").write_text(json.dumps({"fingerprint": "x", "documents": []}))
    (run / "index" / "chunks.faiss").write_bytes(b"")
    (run / "index" / "id_map.json").write_text("{}")
    with pytest.raises(IndexFormatError, match="older version.*Re-run the ETL.*build-index"):
        RagIndex.load(run)
