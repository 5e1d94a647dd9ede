"""BM25 with bm25s, scoring exactly as rank-bm25's ``BM25Okapi`` (the reference we must match).

Scoring (rank-bm25 ``BM25Okapi``, k1=1.5, b=0.75, epsilon=0.25 by default)::

    score(q, d) = sum over query tokens t (repeats count) of
                  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln((N - df(t) + 0.5) / (df(t) + 0.5)), and where that is negative,
                  epsilon * (mean idf over the vocabulary, negatives included)

bm25s has no method with this idf, so we index with its ``atire`` term-frequency component (the
formula above) and ``lucene`` idf (always positive), then rescale each term's column of the sparse
score matrix by ``okapi_idf / lucene_idf``. Retrieval (sparse sums, top-k) stays bm25s's, on its
numpy backend: the numba backend spent ~13 s compiling and was not faster on SciFact's 300 queries.

Tokenisation (the same token lists feed bm25s and rank-bm25): ``bm25s.tokenize`` lower-cases,
splits on ``(?u)\\b\\w\\w+\\b`` (scikit-learn's pattern: words of two or more word characters),
drops bm25s's English stopword list (NLTK's), then stems with PyStemmer's Snowball ``english``
stemmer. All of these are ``Bm25Params`` fields and are saved with the index.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rag_runtime.documents import DocStore
from rag_runtime.filters import MetadataFilter
from rag_runtime.hits import Hit

CONFIG_FILE = "bm25_config.json"


class Bm25Params(BaseModel):
    """BM25 parameters and tokenisation choices (saved in ``bm25/bm25_config.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    epsilon: float = Field(0.25, ge=0, description="rank-bm25's floor for negative idf, as a share of the mean idf.")
    lower: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"
    stopwords: str | None = Field("en", description="bm25s stopword list name ('en' = NLTK English), or None.")
    stemmer: str | None = Field("english", description="PyStemmer (Snowball) algorithm, or None.")


class Bm25Tokenizer:
    """Text -> token strings, as configured by ``Bm25Params`` (thread-safe: one stemmer per thread)."""

    def __init__(self, params: Bm25Params | None = None):
        self.params = params or Bm25Params()
        self._local = threading.local()

    def _stemmer(self):
        if self.params.stemmer is None:
            return None
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer

            stemmer = self._local.stemmer = Stemmer.Stemmer(self.params.stemmer)
        return stemmer

    def __call__(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        texts = list(texts)
        if not texts:
            return []
        p = self.params
        return bm25s.tokenize(
            texts, lower=p.lower, token_pattern=p.token_pattern, stopwords=p.stopwords or [],
            stemmer=self._stemmer(), return_ids=False, show_progress=show_progress,
        )


def okapi_idf(doc_freqs: np.ndarray, n_docs: int, epsilon: float) -> np.ndarray:
    """rank-bm25 ``BM25Okapi`` idf for each term, from its document frequency."""
    df = doc_freqs.astype(np.float64)
    idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    floor = epsilon * idf.mean() if len(idf) else 0.0
    return np.where(idf < 0, floor, idf)


def _rescale_to_okapi_idf(model: bm25s.BM25, epsilon: float) -> None:
    """Turn a bm25s ``atire``/``lucene`` index into BM25Okapi scores, column by column."""
    scores = model.scores
    indptr = np.asarray(scores["indptr"])
    df = np.diff(indptr)  # one CSC entry per (term, document containing it)
    n = int(scores["num_docs"])
    lucene = np.log1p((n - df + 0.5) / (df + 0.5))
    factor = okapi_idf(df, n, epsilon) / lucene
    data = np.asarray(scores["data"], dtype=np.float64) * np.repeat(factor, df)
    scores["data"] = data.astype(model.dtype)


class Bm25Retriever:
    """BM25 retriever over a ``DocStore`` (bm25s index, rank-bm25 ``BM25Okapi`` scores)."""

    name = "bm25"

    def __init__(self, store: DocStore, model: bm25s.BM25, params: Bm25Params):
        self.store = store
        self.model = model
        self.params = params
        self.tokenizer = Bm25Tokenizer(params)

    @classmethod
    def build(cls, store: DocStore, params: Bm25Params | None = None, *, show_progress: bool = False) -> Bm25Retriever:
        params = params or Bm25Params()
        tokens = Bm25Tokenizer(params)([d.search_text for d in store.docs], show_progress=show_progress)
        return cls.from_tokens(store, tokens, params)

    @classmethod
    def from_tokens(cls, store: DocStore, corpus_tokens: list[list[str]], params: Bm25Params | None = None) -> Bm25Retriever:
        """Index pre-tokenised documents (one token list per row of ``store``)."""
        params = params or Bm25Params()
        if len(corpus_tokens) != len(store):
            raise ValueError(f"{len(corpus_tokens)} token lists for {len(store)} documents")
        if not any(corpus_tokens):
            raise ValueError("BM25: no document has a single token after tokenisation; nothing to index")
        model = bm25s.BM25(k1=params.k1, b=params.b, method="atire", idf_method="lucene", backend="numpy")
        model.index(corpus_tokens, create_empty_token=False, show_progress=False)
        _rescale_to_okapi_idf(model, params.epsilon)
        return cls(store, model, params)

    # -- scoring -------------------------------------------------------------------------------

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        """Vocabulary ids of the tokens that occur in the corpus (repeats kept, unknown dropped)."""
        vocab = self.model.vocab_dict
        return [vocab[t] for t in tokens if t in vocab]

    def score_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (index order) for a tokenised query."""
        ids = self.token_ids(tokens)
        if not ids:
            return np.zeros(len(self.store), dtype=np.float64)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float64)

    def scores(self, query: str) -> np.ndarray:
        return self.score_tokens(self.tokenizer([query])[0])

    # -- retrieval -----------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, filters: MetadataFilter | None = None) -> list[Hit]:
        return self.search_many([query], k, filters)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, filters: MetadataFilter | None = None) -> list[list[Hit]]:
        """Top-``k`` documents per query; documents with score 0 (no query term) are left out."""
        return self.search_tokens(self.tokenizer(queries), k, filters)

    def rank(self, queries: Sequence[str], k: int = 10,
             filters: MetadataFilter | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Like ``search_many`` but (rows, scores) arrays per query, for fusion and benchmarks."""
        return self.rank_tokens(self.tokenizer(queries), k, filters)

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int = 10, filters: MetadataFilter | None = None) -> list[list[Hit]]:
        return [
            [self.store.hit(int(r), float(s), {"bm25": float(s)}) for r, s in zip(rows, scores, strict=True)]
            for rows, scores in self.rank_tokens(queries_tokens, k, filters)
        ]

    def rank_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int = 10,
                    filters: MetadataFilter | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (document rows, scores), best first, score > 0 only. No ``Hit`` objects made."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mask = self.store.filters.mask(filters)
        weight = None if mask is None else mask.astype(self.model.dtype)
        k = min(k, len(self.store))
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        results: list[tuple[np.ndarray, np.ndarray]] = [empty for _ in queries_tokens]
        todo = [(i, ids) for i, ids in enumerate(self.token_ids(t) for t in queries_tokens) if ids]
        if not todo:
            return results
        rows, scores = self.model.retrieve(
            [ids for _, ids in todo], k=k, show_progress=False, weight_mask=weight, n_threads=0,
        )
        for (i, _), r, s in zip(todo, rows, scores, strict=True):
            keep = s > 0
            results[i] = (r[keep], s[keep])
        return results

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder), show_progress=False)
        (folder / CONFIG_FILE).write_text(self.params.model_dump_json(indent=2))

    @classmethod
    def load(cls, folder: Path, store: DocStore) -> Bm25Retriever:
        params = Bm25Params.model_validate(json.loads((folder / CONFIG_FILE).read_text()))
        model = bm25s.BM25.load(str(folder), load_corpus=False, mmap=False, allow_pickle=False, show_progress=False)
        if int(model.scores["num_docs"]) != len(store):
            raise ValueError(
                f"{folder}: BM25 index holds {model.scores['num_docs']} documents but the index's docs.jsonl "
                f"has {len(store)}; rebuild the index"
            )
        return cls(store, model, params)
