"""The support check of a final answer: are its words found in the chunks it cites?

An answer's *terms* are its BM25 analyser tokens (``Bm25Tokenizer``: lower-cased, bm25s's
179-word ``en_plus`` stop list dropped, Snowball-stemmed, so "feeding" matches "feed") plus every
number as written ("12", "3.5"). The answer is supported when

* at least ``min_share`` (default 0.75) of its terms occur in the cited chunks' text, and
* every number in it occurs in them (a wrong number is the commonest unsupported claim of a small
  model: "every 12 weeks" against a chunk that says "once a week").

It is lexical, so it catches invented facts and numbers, not a negation or a swapped relation
made of the chunk's own words. An answer with no terms at all (e.g. "Yes.") is supported only
when it is a phrase of a cited chunk. A refusal is not checked.

An answer can be supported and still answer another question: a sentence copied from a chunk
always passes the two conditions above. Given the ``question``, the check also asks that the answer
is *about* it: the answer together with its evidence sentence (the sentence of the cited chunks
holding most of the answer's terms; for a copied sentence, itself) must hold at least
``min_question_share`` (default ``DEFAULT_MIN_QUESTION_SHARE``) of the question's terms. "Who
invented the bicycle chain?" answered with a sentence on chain wear holds "chain" but not
"invent" or "bicycle": a share of 1/3, not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from pydantic import BaseModel, Field

from rag_runtime.hits import Hit

DEFAULT_MIN_SUPPORT = 0.75
DEFAULT_MIN_QUESTION_SHARE = 0.5
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")


class SupportCheck(BaseModel):
    """Result of ``check_support`` (``Answer.support``)."""

    supported: bool
    share: float = Field(description="Share of the answer's terms found in the cited chunks (1.0 for no terms).")
    unsupported_terms: list[str] = Field(default_factory=list, description="Answer words/numbers absent from the cited chunks.")
    min_share: float
    question_share: float | None = Field(None, description="Share of the question's terms found in the answer and its "
                                         "evidence sentence (None: no question given).")
    min_question_share: float | None = None


@lru_cache(maxsize=1)
def _tokenizer():
    from rag_runtime.bm25 import Bm25Params, Bm25Tokenizer

    # en_plus, not the index's default "en" (33 words: "you", "when", "which" would count as claims)
    return Bm25Tokenizer(Bm25Params(stopwords="en_plus"))


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _terms(text: str) -> dict[str, str]:
    """term -> the answer's first word for it (stems are shown to users as the word they came from)."""
    tokenizer = _tokenizer()
    words = re.findall(tokenizer.params.token_pattern, text)
    stems = tokenizer([text])[0]
    out: dict[str, str] = {}
    by_stem = {s: w for w in words for s in tokenizer([w])[0]}
    for s in stems:
        out.setdefault(s, by_stem.get(s, s))
    return out


def terms_of(text: str) -> set[str]:
    """The terms of ``text`` as the check counts them (stems and numbers)."""
    return set(_tokenizer()([text])[0]) | _numbers(text)


def evidence_sentence(answer: str, cited: Sequence[Hit]) -> str:
    """The sentence of the cited chunks that holds most of the answer's terms ('' when none holds any)."""
    from rag_runtime.extractive import split_sentences

    wanted = terms_of(answer)
    best, best_n = "", 0
    for h in cited:
        for sentence in split_sentences(h.text):
            n = len(wanted & terms_of(sentence))
            if n > best_n:
                best, best_n = sentence, n
    return best


def question_share(question: str, answer: str, cited: Sequence[Hit]) -> float:
    """Share of ``question``'s terms in ``answer`` plus its evidence sentence (1.0 for a question with no terms)."""
    wanted = terms_of(question)
    if not wanted:
        return 1.0
    found = terms_of(answer) | terms_of(evidence_sentence(answer, cited))
    return len(wanted & found) / len(wanted)


def check_support(answer: str, cited: Sequence[Hit], min_share: float = DEFAULT_MIN_SUPPORT, *,
                  question: str | None = None, min_question_share: float = DEFAULT_MIN_QUESTION_SHARE) -> SupportCheck:
    """Check ``answer`` against the text (and titles) of the chunks it cites, and, given the
    ``question``, that the answer is about it (see the module docstring)."""
    check = _check_against_chunks(answer, cited, min_share)
    if question is None or not question.strip():
        return check
    share = question_share(question, answer, cited)
    check.question_share = round(share, 4)
    check.min_question_share = min_question_share
    if share < min_question_share:
        check.supported = False
    return check


def _check_against_chunks(answer: str, cited: Sequence[Hit], min_share: float) -> SupportCheck:
    source = " ".join(f"{h.title} {h.text}" for h in cited)
    numbers = _numbers(answer)
    terms = {k: v for k, v in _terms(answer).items() if not k.replace(".", "").isdigit()}
    if not terms and not numbers:
        flat = " ".join(answer.lower().split()).strip(" .!?")
        ok = bool(flat) and flat in " ".join(source.lower().split())
        return SupportCheck(supported=ok, share=1.0 if ok else 0.0, unsupported_terms=[] if ok else [answer.strip()],
                            min_share=min_share)
    source_terms = set(_tokenizer()([source])[0])
    source_numbers = _numbers(source)
    missing = [word for term, word in terms.items() if term not in source_terms]
    missing_numbers = sorted(numbers - source_numbers)
    total = len(terms) + len(numbers)
    share = (total - len(missing) - len(missing_numbers)) / total
    return SupportCheck(supported=share >= min_share and not missing_numbers, share=round(share, 4),
                        unsupported_terms=missing + missing_numbers, min_share=min_share)
