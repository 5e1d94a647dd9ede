"""The ``precision`` validation profile: checks that use no LLM, beside the model's own.

A QA pair of the ``precision`` profile must pass, on top of the ``standard`` checks (well formed,
grounded, the judge where it gates, the extractive roundtrip):

* ``retrieval``: its question shares at least ``MIN_SHARED_TERMS`` content terms with its chunk
  (so "What did he do?" is out even in a document of one chunk), and ranks its own chunk first
  among its document's chunks, both by BM25 (Okapi, k1 = 1.5, b = 0.75, over the grounding
  check's stemmed content terms) and by the embedding model (cosine);
* ``answer_in_question``: the question does not hold its answer (every content term of the
  answer found in the question, or the whole answer as a phrase);
* ``prompt_copy``: the question is not a prompt example and not a near-copy of its chunk's first
  sentence (token F1 >= ``NEAR_COPY_F1``);
* ``answer_span``: the answer is a span of the chunk. An abstractive answer is matched to the span
  of the chunk with the best token F1; it passes when that F1 reaches ``SPAN_MATCH_F1``, and the
  span, not the model's wording, becomes the fine-tuning target;
* ``answer_length``: the answer has at most ``MAX_ANSWER_WORDS`` words (the QA prompt asks for
  "a few words"; a whole sentence is a summary, not an answer);
* ``reader_exact`` (extractive pairs): the reader's span equals the intended one after SQuAD
  normalisation (the ``standard`` roundtrip accepts token F1 >= the roundtrip threshold).

The thresholds are constants chosen on one SQuAD article (the dev article of
``etl_pipeline.calibrate``) and never on the articles the calibration reports; see
docs/etl_pipeline.md. Every rejection reason starts with its check's name and a colon, so the run
report counts rejections by check (``reason_code``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from etl_pipeline.fallbacks import content_words
from etl_pipeline.grounding import _stem
from etl_pipeline.sentences import sentence_spans
from liquid_shared.metrics import exact_match, normalize_answer, token_f1

PRECISION_CHECKS: tuple[str, ...] = ("retrieval", "answer_in_question", "prompt_copy", "answer_span", "answer_length",
                                     "reader_exact")
"""The checks the ``precision`` profile adds, by the name that starts their rejection reasons."""

NEAR_COPY_F1 = 0.8
"""A question with at least this token F1 against its chunk's first sentence is a near-copy."""

SPAN_MATCH_F1 = 0.8
"""Least token F1 between an abstractive answer and its best-matching span of the chunk."""

MAX_EXTRA_SPAN_TOKENS = 3
"""Spans up to this many tokens longer than the answer are tried when matching it to the chunk."""

MIN_SHARED_TERMS = 2
"""Least number of distinct content terms a question shares with its chunk."""

MAX_ANSWER_WORDS = 8
"""Most words of a kept answer (of its span, under this profile)."""

BM25_K1, BM25_B = 1.5, 0.75

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_TOKEN = re.compile(r"\S+")


@lru_cache(maxsize=1)
def prompt_example_questions() -> tuple[str, ...]:
    """The example questions written into the QA prompts (a model that copies one has not read the passage)."""
    from etl_pipeline.llm_stages import INSTRUCTIONS

    found = re.findall(r'"question": "([^"]+)"', " ".join(INSTRUCTIONS.values()))
    return tuple(dict.fromkeys(found))


def terms(text: str) -> list[str]:
    """Stemmed content words and numbers, in order, repeats kept (BM25's term frequencies)."""
    return [_stem(w) for w in content_words(text)] + _NUMBER.findall(text)


def bm25_scores(query: str, docs: Sequence[str]) -> np.ndarray:
    """Okapi BM25 of ``query`` against each of ``docs`` (idf with the +1 floor of Lucene)."""
    doc_terms = [Counter(terms(d)) for d in docs]
    lengths = np.array([sum(c.values()) for c in doc_terms], dtype=float)
    avg = lengths.mean() if len(docs) and lengths.mean() > 0 else 1.0
    n = len(docs)
    scores = np.zeros(n)
    for term in set(terms(query)):
        df = sum(1 for c in doc_terms if term in c)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, c in enumerate(doc_terms):
            tf = c.get(term, 0)
            if tf:
                scores[i] += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * lengths[i] / avg))
    return scores


def ranks_first(scores: np.ndarray, own: int) -> bool:
    """``own`` scores strictly above every other entry (a tie is not a first place)."""
    if len(scores) <= 1:
        return True
    others = np.delete(scores, own)
    return bool(scores[own] > others.max())


def retrieval_reason(question: str, own: int, chunk_texts: Sequence[str], question_vector: np.ndarray | None,
                     chunk_vectors: np.ndarray | None) -> str | None:
    """Why the question does not retrieve its own chunk (index ``own``) first, or None."""
    shared = set(terms(question)) & set(terms(chunk_texts[own]))
    if len(shared) < MIN_SHARED_TERMS:
        return f"retrieval: the question shares {len(shared)} content word(s) with its chunk (< {MIN_SHARED_TERMS})"
    if len(chunk_texts) <= 1:
        return None
    failed = []
    if not ranks_first(bm25_scores(question, chunk_texts), own):
        failed.append("BM25")
    if question_vector is not None and chunk_vectors is not None:
        if not ranks_first(np.asarray(chunk_vectors) @ np.asarray(question_vector), own):
            failed.append("embedding")
    if not failed:
        return None
    return f"retrieval: the question does not rank its own chunk first among the document's {len(chunk_texts)} ({', '.join(failed)})"


def answer_in_question_reason(question: str, answer: str) -> str | None:
    answer_terms = set(terms(answer))
    q_norm, a_norm = normalize_answer(question), normalize_answer(answer)
    if a_norm and re.search(rf"(?<!\S){re.escape(a_norm)}(?!\S)", q_norm):
        return "answer_in_question: the question contains its answer"
    if answer_terms and answer_terms <= set(terms(question)):
        return "answer_in_question: every content word of the answer is in the question"
    return None


def prompt_copy_reason(question: str, chunk_text: str) -> str | None:
    for example in prompt_example_questions():
        if token_f1(question, example) >= NEAR_COPY_F1:
            return f"prompt_copy: the question is the prompt's example {example!r}"
    spans = sentence_spans(chunk_text)
    if spans:
        start, end = spans[0]
        first = chunk_text[start:end]
        f1 = token_f1(question, first)
        if f1 >= NEAR_COPY_F1:
            return f"prompt_copy: the question is a near-copy of the chunk's first sentence (token F1 {f1:.2f})"
    return None


@dataclass(frozen=True)
class SpanMatch:
    """The span of the chunk that best matches an answer (``text == chunk[start:end]``)."""

    text: str
    start: int
    f1: float


def best_span(answer: str, chunk_text: str) -> SpanMatch | None:
    """The chunk span (whole whitespace tokens, outer punctuation trimmed) with the highest token F1
    against ``answer``; the shortest, then the earliest, among equals. None for an empty answer."""
    n_answer = len(normalize_answer(answer).split())
    if not n_answer:
        return None
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(chunk_text)]
    best: SpanMatch | None = None
    for i in range(len(tokens)):
        for j in range(i, min(len(tokens), i + n_answer + MAX_EXTRA_SPAN_TOKENS)):
            raw = chunk_text[tokens[i][0]:tokens[j][1]]
            text = raw.strip(" ,;:.!?\"'()[]")
            if not text:
                continue
            f1 = token_f1(text, answer)
            if best is None or f1 > best.f1 + 1e-12:
                best = SpanMatch(text, tokens[i][0] + raw.find(text), f1)
    return best


def answer_span_reason(answer: str, chunk_text: str) -> tuple[str | None, str | None]:
    """``(reason, span)``: the span that stands for the answer when it passes, else the reason."""
    if answer and answer in chunk_text:
        return None, answer
    match = best_span(answer, chunk_text)
    if match is None or match.f1 < SPAN_MATCH_F1:
        f1 = match.f1 if match else 0.0
        return (f"answer_span: no span of the chunk matches the answer (best token F1 {f1:.2f} < "
                f"{SPAN_MATCH_F1:.2f})"), None
    return None, match.text


def answer_length_reason(answer: str) -> str | None:
    n = len(answer.split())
    if n > MAX_ANSWER_WORDS:
        return f"answer_length: the answer has {n} words (> {MAX_ANSWER_WORDS})"
    return None


def reader_exact_reason(reader_answer: str, intended: str) -> str | None:
    if reader_answer and exact_match(reader_answer, intended):
        return None
    return f"reader_exact: the reader's span {reader_answer!r} is not the intended {intended!r}"


def reason_code(reason: str) -> str:
    """The check a rejection reason comes from (what the run report counts rejections by)."""
    head = reason.split(":", 1)[0]
    if head in PRECISION_CHECKS:
        return head
    for prefix, code in (("question does not end", "malformed"), ("empty answer", "malformed"),
                         ("answer repeats", "malformed"), ("answer not grounded", "grounding"),
                         ("reader disagrees", "roundtrip"), ("question gives its answer away", "answer_given_away"),
                         ("judge", "judge")):
        if reason.startswith(prefix):
            return code
    return "other"
