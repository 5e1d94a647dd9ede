"""Sentence boundaries with NLTK's Punkt (its default parameters plus common abbreviations).

Punkt is used untrained, so nothing is downloaded; the abbreviation list keeps "e.g." and
"Dr." from ending sentences. Spans are character offsets into the given text.
"""

from __future__ import annotations

from functools import lru_cache

_ABBREVIATIONS = {
    "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "fig", "figs", "eq", "no", "vol", "pp", "ch", "sec",
    "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "dept", "univ",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "a.m", "p.m", "u.s", "u.k", "ca", "min", "max", "avg",
}  # fmt: skip


@lru_cache(maxsize=1)
def _tokenizer():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(_ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, in order, whitespace excluded."""
    return [(s, e) for s, e in _tokenizer().span_tokenize(text) if text[s:e].strip()]
