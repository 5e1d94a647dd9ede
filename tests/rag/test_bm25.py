"""BM25: tokenisation, exact scores and ranking, equality with rank-bm25, filters, persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag_runtime import (
    Bm25Params,
    Bm25Retriever,
    Bm25Tokenizer,
    DocStore,
    IndexedDoc,
    MetadataFilter,
)

TINY = {"d0": "Apple banana apple", "d1": "banana cherry", "d2": "Cherry banana durian", "d3": "elderberry"}


@pytest.fixture(scope="module")
def tiny():
    store = DocStore([IndexedDoc(id=i, text=t) for i, t in TINY.items()])
    return Bm25Retriever.build(store)


def test_tokenizer_lowercases_drops_stopwords_and_short_tokens_and_stems():
    tok = Bm25Tokenizer()
    assert tok(["The Cats are RUNNING to a bakery, x y!"]) == [["cat", "run", "bakeri"]]
    assert tok(["Apple banana apple"]) == [["appl", "banana", "appl"]]


def test_tokenizer_options_turn_stemming_and_stopwords_off():
    tok = Bm25Tokenizer(Bm25Params(stemmer=None, stopwords=None))
    assert tok(["The Cats are running"]) == [["the", "cats", "are", "running"]]


def okapi(tf: int, dl: int, avgdl: float, idf: float, k1: float = 1.5, b: float = 0.75) -> float:
    return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))


def test_scores_follow_the_bm25okapi_formula_by_hand(tiny):
    # tokens: d0 [appl, banana, appl], d1 [banana, cherri], d2 [cherri, banana, durian], d3 [elderberri]
    n, avgdl = 4, 9 / 4
    raw = {"appl": math.log(3.5 / 1.5), "banana": math.log(1.5 / 3.5), "cherri": 0.0,
           "durian": math.log(3.5 / 1.5), "elderberri": math.log(3.5 / 1.5)}
    assert n == len(TINY)
    floor = 0.25 * sum(raw.values()) / len(raw)  # banana is in 3 of 4 docs: negative idf -> epsilon floor
    banana = floor
    expected = {
        "d0": okapi(1, 3, avgdl, banana) + okapi(2, 3, avgdl, raw["appl"]),
        "d1": okapi(1, 2, avgdl, banana),
        "d2": okapi(1, 3, avgdl, banana),
    }
    scores = tiny.scores("banana apple")
    np.testing.assert_allclose(scores, [expected["d0"], expected["d1"], expected["d2"], 0.0], rtol=1e-6)
    hits = tiny.search("banana apple", k=10)
    assert [h.id for h in hits] == ["d0", "d1", "d2"]  # d3 shares no term: left out
    assert hits[0].score == pytest.approx(1.16697, abs=1e-4)
    assert hits[0].scores == {"bm25": hits[0].score}


def test_repeated_query_terms_count_each_time_like_rank_bm25(tiny):
    once, twice = tiny.scores("durian"), tiny.scores("durian durian")
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)
    assert once[2] > 0


def test_scores_equal_rank_bm25_on_the_generated_corpus(corpus):
    store = DocStore(corpus)
    tokens = Bm25Tokenizer()([d.search_text for d in corpus])
    ours = Bm25Retriever.from_tokens(store, tokens)
    reference = BM25Okapi(tokens, k1=1.5, b=0.75, epsilon=0.25)
    queries = [d.text for d in corpus] + [
        "interest rates interest rates inflation", "the sun and the moon", "blood glucose insulin",
        "code tests code", "zzz unknown words only",
    ]
    for query_tokens in Bm25Tokenizer()(queries):
        expected = reference.get_scores(query_tokens)
        np.testing.assert_allclose(ours.score_tokens(query_tokens), expected, rtol=1e-6, atol=1e-6)
        hits = ours.search_tokens([query_tokens], k=len(corpus))[0]
        assert {h.id for h in hits} == {corpus[i].id for i in np.flatnonzero(expected > 0)}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.score == pytest.approx(expected[store.row_of[h.id]], rel=1e-6)


def test_ranking_on_the_generated_corpus(rag_index):
    # finance-4 holds "interest rates" twice; finance-0 and finance-2 once; no other document has them
    hits = rag_index.bm25.search("interest rates", k=10)
    assert hits[0].id == "finance-4"
    assert {h.id for h in hits} == {"finance-4", "finance-0", "finance-2"}


def test_empty_and_unknown_queries_return_no_hits(tiny):
    assert tiny.search("", k=5) == []
    assert tiny.search("the and of", k=5) == []  # stopwords only
    assert tiny.search("zeppelin", k=5) == []
    assert tiny.search_many(["zeppelin", "durian"], k=5)[1][0].id == "d2"


def test_k_is_clamped_to_the_corpus_and_must_be_positive(tiny):
    assert len(tiny.search("banana", k=1000)) == 3
    with pytest.raises(ValueError, match="k must be >= 1"):
        tiny.search("banana", k=0)


def test_filters_restrict_bm25_hits(rag_index):
    hits = rag_index.bm25.search("the", k=10)  # stopword: nothing
    assert hits == []
    risk = rag_index.bm25.search("risk", k=10)
    assert {h.metadata["categories"][0] for h in risk} == {"economy", "health"}
    only_health = rag_index.bm25.search("risk", k=10, filters=MetadataFilter(categories=["health"]))
    assert only_health and all(h.id.startswith("medicine-") for h in only_health)
    assert rag_index.bm25.search("risk", k=10, filters=MetadataFilter(tags="kitchen")) == []


def test_save_and_load_keep_the_scores(tmp_path, rag_index):
    rag_index.bm25.save(tmp_path / "bm25")
    loaded = Bm25Retriever.load(tmp_path / "bm25", rag_index.store)
    assert loaded.params == rag_index.bm25.params
    for query in ("interest rates", "the goalkeeper saved a penalty", "moons"):
        np.testing.assert_allclose(loaded.scores(query), rag_index.bm25.scores(query), rtol=1e-7)


def test_load_refuses_an_index_of_another_size(tmp_path, rag_index):
    rag_index.bm25.save(tmp_path / "bm25")
    other = DocStore(rag_index.store.docs[:5])
    with pytest.raises(ValueError, match="holds 36 documents but the index's docs.jsonl has 5"):
        Bm25Retriever.load(tmp_path / "bm25", other)
