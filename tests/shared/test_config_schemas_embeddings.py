"""Settings, schemas (stable ids, JSONL), profiles and the cached embedder."""

from __future__ import annotations

import numpy as np
import pytest

from liquid_shared.config import LiquidSettings, get_settings
from liquid_shared.embeddings import Embedder
from liquid_shared.models import get_profile
from liquid_shared.schemas import Chunk, Document, QAPair, read_jsonl, write_jsonl


def test_settings_from_env_and_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "liquid.toml").write_text('profile = "lfm2"\nmemory_budget_gb = 12.5\n')
    s = LiquidSettings()
    assert s.profile == "lfm2" and s.memory_budget_gb == 12.5
    monkeypatch.setenv("LIQUID_PROFILE", "offline")
    assert LiquidSettings().profile == "offline"  # env beats file


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("LIQUID_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        LiquidSettings()


def test_profiles():
    offline = get_profile("offline")
    assert len(offline.distinct_specs()) == 1
    lfm2 = get_profile("lfm2")
    assert lfm2.spec_for("qa").model == "LiquidAI/LFM2-1.2B"
    assert lfm2.spec_for("summary").model == "LiquidAI/LFM2-700M"
    assert lfm2.spec_for("qa").temperature == 0.3 and lfm2.spec_for("qa").min_p == 0.15
    with pytest.raises(ValueError, match="unknown model profile 'big'"):
        get_profile("big")


def test_ids_are_stable_content_hashes_and_jsonl_roundtrips(tmp_path):
    d1 = Document.from_text("hello world", source="a.txt")
    d2 = Document.from_text("hello world", source="a.txt")
    d3 = Document.from_text("hello world!", source="a.txt")
    assert d1.doc_id == d2.doc_id != d3.doc_id
    c = Chunk(chunk_id=Chunk.make_id(d1.doc_id, 0, "hello"), doc_id=d1.doc_id, text="hello", position=0)
    q = QAPair(qa_id=QAPair.make_id(c.chunk_id, "Q?", "A"), chunk_id=c.chunk_id, doc_id=d1.doc_id,
               question="Q?", answer="A")
    assert QAPair.make_id(c.chunk_id, " q? ", "a") == q.qa_id  # normalised
    path = tmp_path / "chunks.jsonl"
    assert write_jsonl(path, [c, c]) == 2
    assert [x.chunk_id for x in read_jsonl(path, Chunk)] == [c.chunk_id] * 2
    path.write_text(path.read_text() + '{"chunk_id": 1}\n')
    with pytest.raises(ValueError, match=r"chunks.jsonl:3: not a valid Chunk"):
        list(read_jsonl(path, Chunk))


def test_embedder_batches_normalises_and_caches(tmp_path):
    emb = Embedder(cache=tmp_path / "cache")
    texts = ["The cat sat on the mat.", "A feline rested on a rug.", "Stock markets fell sharply."]
    v = emb.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]  # semantics, not noise
    again = Embedder(cache=tmp_path / "cache")  # a new process would see the same cache
    assert len(again._cache) == 3
    assert np.allclose(again.encode(texts[::-1]), v[::-1], atol=1e-6)
    assert len(again._cache) == 3  # nothing re-encoded
    mixed = again.encode(["Stock markets fell sharply.", "A new sentence."])
    assert mixed.shape == (2, 384) and len(again._cache) == 4
    get_settings.cache_clear()
