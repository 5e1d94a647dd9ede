"""The grounding check of a QA pair: is the answer supported by the words of its chunk?

Score = share of the answer's content words (three or more letters, not stop words; numbers
count too) that occur in the chunk, with a light stemming (plural and -ed/-ing endings) so that
"tides" matches "tide". An answer with no content word (e.g. "Yes") scores by exact phrase
containment. Cheap, deterministic and explainable: it is the half of validation that does not
trust the model.
"""

from __future__ import annotations

import re

from etl_pipeline.fallbacks import content_words

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in content_words(text)} | set(_NUMBER.findall(text))


def grounding_score(answer: str, chunk_text: str) -> float:
    """Share in [0, 1] of the answer's content terms found in the chunk."""
    answer_terms = _terms(answer)
    if not answer_terms:
        return 1.0 if " ".join(answer.lower().split()) in " ".join(chunk_text.lower().split()) else 0.0
    chunk_terms = _terms(chunk_text)
    return len(answer_terms & chunk_terms) / len(answer_terms)


def well_formed(question: str, answer: str) -> list[str]:
    """Reasons a QA pair is malformed (empty list when it is fine)."""
    reasons = []
    q, a = question.strip(), answer.strip()
    if not q.endswith("?"):
        reasons.append("question does not end with '?'")
    if not a:
        reasons.append("empty answer")
    if a and a.lower().rstrip(".?! ") == q.lower().rstrip(".?! "):
        reasons.append("answer repeats the question")
    return reasons
