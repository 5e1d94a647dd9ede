"""Answer metrics of ``rag_answers``: SQuAD v2.0's official EM/F1, answer accuracy, refusal, citations.

SQuAD v2.0 (the official ``evaluate-v2.0.py`` of Rajpurkar et al. 2018, restated, not copied):

* answers are normalised (lower case, ASCII punctuation and the articles a/an/the removed, white
  space collapsed) and split on white space;
* an unanswerable question's gold answers are ``[""]``; a refusal is the empty prediction;
* exact match: 1 when the normalised prediction equals a normalised gold answer (max over golds);
* F1: token-overlap F1, max over golds; when the prediction or the gold has no tokens, F1 is 1 if
  both have none, else 0 (so refusing an unanswerable question scores 1, answering it 0);
* ``HasAns``/``NoAns``: the means over the answerable / unanswerable questions; the overall means
  are over all questions.

Answer accuracy (one measure across styles, answerable questions only, a refusal is wrong):

* a sentence answer (extractive style, no-LLM baselines) is right when it contains a human answer
  span (normalised, as a whole-token substring of the normalised sentence);
* a generative answer is right when its SQuAD F1 with a human answer is at least 0.5.

Refusal: precision, recall and F1 of "refused" against "unanswerable". Citations: a cited chunk is
the question's paragraph. The support check as a predictor: its precision and recall of "the answer
is right", over the answered (not refused) answerable questions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from liquid_shared.metrics.generation import normalize_answer

GENERATIVE_F1_BAR = 0.5


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _golds(golds: Sequence[str]) -> list[str]:
    """SQuAD v2.0: an empty or all-blank gold list means "no answer" ([""])."""
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def squad_exact(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD v2.0 exact match of ``prediction`` ('' = no answer) against ``golds`` ([] = unanswerable)."""
    pred = normalize_answer(prediction or "")
    return float(max(pred == normalize_answer(g) for g in _golds(golds)))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD v2.0 token F1 of ``prediction`` ('' = no answer) against ``golds`` ([] = unanswerable)."""
    pred = _tokens(prediction or "")
    return max(_f1(pred, _tokens(g)) for g in _golds(golds))


def contains_span(sentence: str, golds: Sequence[str]) -> bool:
    """Whether the normalised ``sentence`` holds a normalised gold span as whole tokens."""
    padded = f" {normalize_answer(sentence)} "
    return any(f" {g} " in padded for g in (normalize_answer(x) for x in golds) if g)


def answer_correct(answer: str, golds: Sequence[str], *, sentence: bool, refused: bool = False) -> bool:
    """Answer accuracy of one answer to an answerable question (see the module docstring)."""
    if refused or not golds:
        return False
    if sentence:
        return contains_span(answer, golds)
    return squad_f1(answer, golds) >= GENERATIVE_F1_BAR


def precision_recall_f1(predicted: Iterable[bool], actual: Iterable[bool]) -> dict[str, float]:
    """Precision, recall and F1 of ``predicted`` positives against ``actual`` ones (0.0 when undefined),
    with the counts."""
    tp = fp = fn = 0
    for p, a in zip(predicted, actual, strict=True):
        tp += p and a
        fp += p and not a
        fn += a and not p
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": float(tp), "fp": float(fp), "fn": float(fn)}


def squad_v2_summary(exact: Sequence[float], f1: Sequence[float], answerable: Sequence[bool]) -> dict[str, float]:
    """The official script's headline numbers: overall, ``HasAns`` and ``NoAns`` exact and F1 (NaN: no such question)."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    has = [i for i, a in enumerate(answerable) if a]
    no = [i for i, a in enumerate(answerable) if not a]
    return {"exact": mean(list(exact)), "f1": mean(list(f1)),
            "HasAns_exact": mean([exact[i] for i in has]), "HasAns_f1": mean([f1[i] for i in has]),
            "NoAns_exact": mean([exact[i] for i in no]), "NoAns_f1": mean([f1[i] for i in no])}
