"""The on-disk index: built from an ETL run folder or a BEIR folder, saved, loaded, and guarded."""

from __future__ import annotations

import json
import os

import pytest

from liquid_shared.data import write_beir
from liquid_shared.schemas import Chunk, ChunkMetadata, write_jsonl
from rag_runtime import (
    IndexFormatError,
    MetadataFilter,
    RagIndex,
    SourceFormatError,
    build_index,
    load_documents,
)
from rag_runtime.index import data_folder


@pytest.fixture(scope="module")
def etl_run(tmp_path_factory, corpus):
    """An ETL run folder: chunks.jsonl (Chunk) and metadata.jsonl (ChunkMetadata)."""
    run = tmp_path_factory.mktemp("etl-run")
    chunks, metas = [], []
    for position, doc in enumerate(corpus):
        topic = doc.id.split("-")[0]
        chunk_id = Chunk.make_id(f"doc-{topic}", position, doc.text)
        chunks.append(Chunk(chunk_id=chunk_id, doc_id=f"doc-{topic}", text=doc.text, position=position,
                            metadata={"source": doc.metadata["source"], "tags": ["generated"]}))
        metas.append(ChunkMetadata(chunk_id=chunk_id, tags=doc.metadata["tags"], category=doc.metadata["categories"][0],
                                   tmd=doc.metadata["tmd"], keywords=[topic]))
    write_jsonl(run / "chunks.jsonl", chunks)
    write_jsonl(run / "metadata.jsonl", metas)
    return run


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory, corpus):
    folder = tmp_path_factory.mktemp("beir") / "tinybeir"
    write_beir(folder, {d.id: {"title": d.id.split("-")[0].title(), "text": d.text} for d in corpus},
               {"q1": "interest rates"}, {"q1": {"finance-4": 1}})
    return folder


def test_etl_chunks_and_metadata_are_merged(etl_run):
    kind, docs = load_documents(etl_run)
    assert kind == "etl" and len(docs) == 36
    meta = docs[0].metadata
    assert meta["source"] == "docs/astronomy.md"
    assert meta["tags"] == ["generated", "space"]
    assert meta["categories"] == ["science"] and meta["tmd"] == "science.astronomy.fact"
    assert meta["doc_id"] == "doc-astronomy" and meta["keywords"] == ["astronomy"]


def test_build_index_from_an_etl_run_and_load_it(etl_run, tmp_path):
    built = build_index(etl_run, tmp_path / "index")
    assert built.manifest.source_kind == "etl" and built.manifest.n_docs == 36
    data = data_folder(tmp_path / "index")
    assert sorted(p.name for p in data.iterdir()) == ["bm25", "dense", "docs.jsonl"]
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == sorted([".index.lock", data.name, "manifest.json"])
    loaded = RagIndex.load(tmp_path / "index")
    query = "Why did the central bank increase interest rates?"
    assert [h.id for h in loaded.retriever("hybrid").search(query, 5)] == \
           [h.id for h in built.retriever("hybrid").search(query, 5)]
    sci = loaded.retriever("hybrid").search(query, 5, MetadataFilter(tmd="science.medicine", tags=["generated"]))
    assert sci and all(h.metadata["categories"] == ["health"] for h in sci)


def test_build_index_from_a_beir_folder(beir_folder, tmp_path):
    index = build_index(beir_folder, tmp_path / "index", with_dense=False)
    assert index.manifest.source_kind == "beir" and index.dense is None
    hits = RagIndex.load(tmp_path / "index").retriever("bm25").search("interest rates", 1)
    assert hits[0].id == "finance-4" and hits[0].title == "Finance"
    assert hits[0].metadata["source"] == "beir/tinybeir"
    with pytest.raises(ValueError, match="needs the dense index"):
        index.retriever("hybrid")


def test_build_index_names_a_folder_it_cannot_read(tmp_path):
    with pytest.raises(SourceFormatError, match="no such folder"):
        build_index(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceFormatError, match="neither an ETL run folder .chunks.jsonl. nor a BEIR folder"):
        build_index(tmp_path / "empty", tmp_path / "out")


def test_load_names_what_is_missing_or_wrong(tmp_path, rag_index_dir):
    with pytest.raises(IndexFormatError, match="no such index folder"):
        RagIndex.load(tmp_path / "nothing")
    (tmp_path / "notindex").mkdir()
    with pytest.raises(IndexFormatError, match="missing manifest.json"):
        RagIndex.load(tmp_path / "notindex")
    (tmp_path / "notindex" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="not a liquid-rag-index manifest"):
        RagIndex.load(tmp_path / "notindex")


def _copy_index(src, dst):
    dst.mkdir()
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(path.read_bytes())


def test_load_refuses_files_that_point_outside_the_index_folder(tmp_path, rag_index_dir):
    index = tmp_path / "index"
    _copy_index(rag_index_dir, index)
    outside = tmp_path / "outside-docs.jsonl"
    data = data_folder(index)
    outside.write_bytes((data / "docs.jsonl").read_bytes())
    (data / "docs.jsonl").unlink()
    os.symlink(outside, data / "docs.jsonl")
    with pytest.raises(IndexFormatError, match="outside the index folder"):
        RagIndex.load(index)


def test_manifest_records_the_parameters(rag_index_dir):
    manifest = json.loads((rag_index_dir / "manifest.json").read_text())
    assert manifest["format"] == "liquid-rag-index" and manifest["version"] == 2
    assert manifest["bm25"] == {"k1": 1.5, "b": 0.75, "epsilon": 0.25, "lower": True,
                                "token_pattern": r"(?u)\b\w\w+\b", "stopwords": "en", "stemmer": "english"}
    assert manifest["dense"]["kind"] == "flat" and manifest["dense"]["dim"] == 384
