"""Training pairs for the encoder: (query, positive document[, hard negative]) by index.

Three sources, one type (``PairSet``):

* ``pairs_from_beir``: a BEIR folder's qrels of a split (SciFact ``qrels/train.tsv``); one pair per
  judgment with score > 0. Unknown query or document ids are an error naming the file and line
  (``liquid_shared.data.load_beir``, strict).
* ``pairs_from_jsonl``: MS MARCO-style lines ``{"query": ..., "positive": ..., "negative": ...}``
  (``negative`` optional; ``positive``/``negative`` may be lists: every positive is paired with the
  first negative).
* ``pairs_from_etl_run``: an ETL run's generated questions, each paired with the chunk it was
  generated from. These labels are **synthetic** (made by the pipeline, no human judged them).
  Questions that the model repeated for chunks of different documents (a 135M model falls back on
  generic questions such as its prompt's example) are dropped: they name no chunk.

``with_bm25_negatives`` gives each pair a hard negative mined with BM25 (``rag_runtime``'s, the
project's BM25 baseline): the best-ranked document of the set for the query that is not one of
its positives (DPR's recipe, Karpukhin et al. 2020).

Document texts follow BEIR's convention, ``"title text"`` (``rag_runtime.IndexedDoc.search_text``).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import TensorDataset


class PairDataError(ValueError):
    """Training data cannot be used; the message names the input and what is wrong."""


@dataclass
class PairSet:
    """Texts and (query, positive, negative) index triples; negative -1 = none."""

    name: str
    queries: list[str]
    docs: list[str]
    doc_keys: list[str]
    triples: list[tuple[int, int, int]]
    query_keys: list[str] = field(default_factory=list)
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.triples)

    def dataset(self) -> TensorDataset:
        if not self.triples:
            raise PairDataError(f"{self.name}: no training pairs")
        t = torch.tensor(self.triples, dtype=torch.long)
        return TensorDataset(t[:, 0], t[:, 1], t[:, 2])

    def split_queries(self, val_share: float, seed: int = 0) -> tuple[PairSet, PairSet]:
        """Two sets with disjoint queries (a seeded ``val_share`` of them in the second)."""
        if not 0 < val_share < 1:
            raise ValueError(f"val_share must be in (0, 1), got {val_share}")
        qs = sorted({q for q, _, _ in self.triples})
        random.Random(seed).shuffle(qs)
        val_q = set(qs[: max(1, round(len(qs) * val_share))])
        part = [[t for t in self.triples if (t[0] in val_q) == is_val] for is_val in (False, True)]
        return (PairSet(f"{self.name}[train]", self.queries, self.docs, self.doc_keys, part[0], self.query_keys,
                        self.synthetic, self.notes),
                PairSet(f"{self.name}[val]", self.queries, self.docs, self.doc_keys, part[1], self.query_keys,
                        self.synthetic, self.notes))

    def compact(self) -> PairSet:
        """The same pairs with only the queries and documents they use (re-indexed)."""
        qs = sorted({q for q, _, _ in self.triples})
        ds = sorted({d for _, p, n in self.triples for d in (p, n) if d >= 0})
        qi, di = {q: i for i, q in enumerate(qs)}, {d: i for i, d in enumerate(ds)}
        keys = self.query_keys or [str(i) for i in range(len(self.queries))]
        return PairSet(self.name, [self.queries[q] for q in qs], [self.docs[d] for d in ds],
                       [self.doc_keys[d] for d in ds], [(qi[q], di[p], di[n] if n >= 0 else -1)
                                                        for q, p, n in self.triples],
                       [keys[q] for q in qs], self.synthetic, self.notes)

    def judgments(self) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
        """Queries and qrels of the triples (to score retrieval of ``docs`` on them)."""
        keys = self.query_keys or [str(i) for i in range(len(self.queries))]
        queries, qrels = {}, defaultdict(dict)
        for q, p, _ in self.triples:
            queries[keys[q]] = self.queries[q]
            qrels[keys[q]][self.doc_keys[p]] = 1
        return queries, dict(qrels)


class _Texts:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.keys: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, key: str, text: str) -> int:
        if key not in self.index:
            self.index[key] = len(self.texts)
            self.texts.append(text)
            self.keys.append(key)
        return self.index[key]


def doc_text(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title else text


def pairs_from_beir(folder: Path | str, split: str = "train") -> PairSet:
    """One pair per positive judgment of ``qrels/<split>.tsv``; the documents are the whole corpus."""
    from liquid_shared.data import load_beir

    data = load_beir(folder, split, strict=True)
    docs = _Texts()
    for doc_id, doc in data.corpus.items():
        docs.add(doc_id, doc_text(doc.title, doc.text))
    queries = _Texts()
    triples = [(queries.add(qid, data.queries[qid]), docs.index[did], -1)
               for qid, judged in data.qrels.items() for did, score in judged.items() if score > 0]
    if not triples:
        raise PairDataError(f"{folder}: qrels/{split}.tsv has no positive judgment (score > 0)")
    return PairSet(f"beir:{Path(folder).name}/{split}", queries.texts, docs.texts, docs.keys, triples, queries.keys)


def _as_list(value: object, path: Path, lineno: int, key: str, required: bool) -> list[str]:
    if value is None and not required:
        return []
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise PairDataError(f"{path}, line {lineno}: {key!r} must be a non-empty string or list of strings, "
                            f"got {json.dumps(value)[:80]}")
    return items


def pairs_from_jsonl(path: Path | str) -> PairSet:
    """MS MARCO-style ``{"query", "positive", "negative"?}`` lines (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PairDataError(f"{path}: file not found (expected JSONL lines with query, positive, negative)")
    queries, docs, triples = _Texts(), _Texts(), []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairDataError(f"{path}, line {lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise PairDataError(f"{path}, line {lineno}: expected an object with query, positive, negative")
        query = _as_list(rec.get("query"), path, lineno, "query", True)[0]
        positives = _as_list(rec.get("positive"), path, lineno, "positive", True)
        negatives = _as_list(rec.get("negative"), path, lineno, "negative", False)
        qi = queries.add(query, query)
        neg = docs.add(negatives[0], negatives[0]) if negatives else -1
        triples += [(qi, docs.add(p, p), neg) for p in positives]
    if not triples:
        raise PairDataError(f"{path}: no training pairs (the file is empty)")
    return PairSet(f"jsonl:{path.name}", queries.texts, docs.texts, docs.keys, triples, queries.keys)


def pairs_from_etl_run(run: Path | str, questions: str = "all") -> PairSet:
    """Generated question -> its source chunk (synthetic labels), from ``qa_pairs.jsonl`` and ``chunks.jsonl``.

    ``questions='valid'`` keeps only the pairs the ETL's validation accepted. Each chunk's key is its
    ``chunk_id``; ``chunk_sources`` maps it back to the source document when needed.
    """
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

    run = Path(run)
    qa_path, chunks_path = run / "qa_pairs.jsonl", run / "chunks.jsonl"
    for p in (qa_path, chunks_path):
        if not p.is_file():
            raise PairDataError(f"ETL run {run} has no {p.name}; run the ETL with the 'qa' stage into it first")
    chunks = {c.chunk_id: c for c in read_jsonl(chunks_path, Chunk)}
    pairs = list(read_jsonl(qa_path, QAPair))
    if questions == "valid":
        val_path = run / "validation.jsonl"
        if not val_path.is_file():
            raise PairDataError(f"ETL run {run} has no validation.jsonl, so questions='valid' cannot be used")
        valid = {v.qa_id for v in read_jsonl(val_path, ValidationResult) if v.valid}
        pairs = [p for p in pairs if p.qa_id in valid]
    elif questions != "all":
        raise PairDataError(f"questions must be 'all' or 'valid', got {questions!r}")
    if not pairs:
        raise PairDataError(f"ETL run {run} has no {'valid ' if questions == 'valid' else ''}QA pairs ({qa_path})")
    docs_per_question: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        docs_per_question[p.question.strip().lower()].add(p.doc_id)
    generic = {q for q, d in docs_per_question.items() if len(d) > 1}
    orphans = sum(p.chunk_id not in chunks for p in pairs)
    kept = [p for p in pairs if p.chunk_id in chunks and p.question.strip().lower() not in generic]
    if not kept:
        raise PairDataError(f"ETL run {run}: no usable QA pair ({len(pairs)} pairs, {orphans} with an unknown chunk, "
                            f"{len(generic)} generic questions repeated across documents)")
    queries, docs = _Texts(), _Texts()
    triples = []
    for p in kept:
        c = chunks[p.chunk_id]
        triples.append((queries.add(p.qa_id, p.question), docs.add(c.chunk_id, doc_text(
            str(c.metadata.get("title") or ""), c.text)), -1))
    notes = [f"{len(pairs) - len(kept)} of {len(pairs)} QA pairs dropped ({orphans} with an unknown chunk; questions "
             f"repeated across documents: {len(generic)})"]
    return PairSet(f"etl:{run.name}", queries.texts, docs.texts, docs.keys, triples, queries.keys, synthetic=True,
                   notes=notes)


def with_bm25_negatives(pairs: PairSet, depth: int = 20) -> PairSet:
    """The same pairs, each with a BM25 hard negative: the highest-ranked of the set's documents for
    its query (of the top ``depth``) that is not a positive of that query and shares a term with it
    (BM25 score > 0: a document with no term in common is a random negative, not a hard one). A
    query with no such document keeps no negative (-1). Existing negatives are replaced."""
    from rag_runtime.bm25 import Bm25Retriever
    from rag_runtime.documents import DocStore, IndexedDoc

    if not pairs.triples:
        raise PairDataError(f"{pairs.name}: no training pairs to mine negatives for")
    positives: dict[int, set[int]] = defaultdict(set)
    for q, p, _ in pairs.triples:
        positives[q].add(p)
    store = DocStore([IndexedDoc(id=str(i), text=t) for i, t in enumerate(pairs.docs)])
    retriever = Bm25Retriever.build(store)
    queries = sorted(positives)
    hits = retriever.search_many([pairs.queries[q] for q in queries], k=min(depth, len(pairs.docs)))
    negative = {}
    for q, ranked in zip(queries, hits, strict=True):
        negative[q] = next((int(h.id) for h in ranked if h.score > 0 and int(h.id) not in positives[q]), -1)
    triples = [(q, p, negative[q]) for q, p, _ in pairs.triples]
    missing = sum(n < 0 for _, _, n in triples)
    notes = [*pairs.notes, f"BM25 hard negatives (top {depth}): {len(triples) - missing} of {len(triples)} pairs"]
    return PairSet(f"{pairs.name}+bm25neg", pairs.queries, pairs.docs, pairs.doc_keys, triples, pairs.query_keys,
                   pairs.synthetic, notes)


def chunk_sources(run: Path | str) -> dict[str, str]:
    """chunk_id -> the ``source`` of its document (``file.jsonl#line`` for a JSONL record)."""
    from liquid_shared.schemas import Chunk, read_jsonl

    return {c.chunk_id: str(c.metadata.get("source")) for c in read_jsonl(Path(run) / "chunks.jsonl", Chunk)}
