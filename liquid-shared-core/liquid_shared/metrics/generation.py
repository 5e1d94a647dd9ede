"""Generation metrics: ROUGE (rouge-score), BLEU (sacrebleu), SQuAD v1.1 exact match and token F1,
and perplexity under a causal LM.

Scales follow the libraries: ROUGE and EM/F1 are in [0, 1]; BLEU is in [0, 100] as sacrebleu
reports it. Where a prediction has several references (a ``list[str]`` in place of a ``str``),
ROUGE takes the best-scoring reference (rouge-score's ``score_multi``), EM and F1 the maximum over
the golds (as the SQuAD script does), BLEU counts n-grams against all of them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
Refs = str | Sequence[str]


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _ref_list(ref: Refs, what: str) -> list[str]:
    refs = [ref] if isinstance(ref, str) else list(ref)
    if not refs:
        raise ValueError(f"{what} is an empty list; give at least one reference")
    return [_check_str(r, f"{what}[{i}]") for i, r in enumerate(refs)]


def _check_pairs(preds: Sequence[str], refs: Sequence[Refs]) -> list[list[str]]:
    if isinstance(preds, str) or isinstance(refs, str):
        raise TypeError("preds and refs must be lists of strings (one reference or a list per prediction)")
    if len(preds) != len(refs):
        raise ValueError(f"preds has {len(preds)} items but refs has {len(refs)}; they must be paired")
    if not preds:
        raise ValueError("preds is empty")
    for i, p in enumerate(preds):
        _check_str(p, f"preds[{i}]")
    return [_ref_list(r, f"refs[{i}]") for i, r in enumerate(refs)]


# ROUGE -----------------------------------------------------------------------------------------


def rouge_per_item(preds: Sequence[str], refs: Sequence[Refs], types: Sequence[str] = ROUGE_TYPES,
                   use_stemmer: bool = False) -> dict[str, list[float]]:
    """ROUGE F-measure of each (prediction, reference) pair, by type: ``{"rouge1": [...], ...}``."""
    from rouge_score import rouge_scorer

    ref_lists = _check_pairs(preds, refs)
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=use_stemmer)
    out: dict[str, list[float]] = {t: [] for t in types}
    for pred, targets in zip(preds, ref_lists, strict=True):
        scores = scorer.score(targets[0], pred) if len(targets) == 1 else scorer.score_multi(targets, pred)
        for t in types:
            out[t].append(scores[t].fmeasure)
    return out


def rouge(preds: Sequence[str], refs: Sequence[Refs], types: Sequence[str] = ROUGE_TYPES,
          use_stemmer: bool = False) -> dict[str, float]:
    """Mean ROUGE F-measure over the pairs, by type: ``{"rouge1": 0.41, "rouge2": ..., "rougeL": ...}``."""
    per_item = rouge_per_item(preds, refs, types=types, use_stemmer=use_stemmer)
    return {t: sum(v) / len(v) for t, v in per_item.items()}


# BLEU ------------------------------------------------------------------------------------------


def bleu_corpus(preds: Sequence[str], refs: Sequence[Refs], tokenize: str = "13a",
                lowercase: bool = False) -> float:
    """Corpus BLEU (sacrebleu, 0-100). Every prediction needs the same number of references."""
    import sacrebleu

    ref_lists = _check_pairs(preds, refs)
    counts = {len(r) for r in ref_lists}
    if len(counts) > 1:
        first = len(ref_lists[0])
        bad = next(i for i, r in enumerate(ref_lists) if len(r) != first)
        raise ValueError(f"refs[{bad}] has {len(ref_lists[bad])} references but refs[0] has {first}; "
                         "corpus BLEU needs the same number for every prediction")
    streams = [list(s) for s in zip(*ref_lists, strict=True)]
    return float(sacrebleu.corpus_bleu(list(preds), streams, tokenize=tokenize, lowercase=lowercase).score)


def bleu_sentence(pred: str, ref: Refs, tokenize: str = "13a", lowercase: bool = False) -> float:
    """Smoothed sentence BLEU (sacrebleu's ``sentence_bleu``: exp smoothing, effective order), 0-100."""
    import sacrebleu

    _check_str(pred, "pred")
    return float(sacrebleu.sentence_bleu(pred, _ref_list(ref, "ref"), tokenize=tokenize, lowercase=lowercase).score)


# SQuAD v1.1 exact match and token F1 -------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop ASCII punctuation, drop a/an/the, collapse spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(pred: str, gold: Refs) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0 (SQuAD v1.1)."""
    target = normalize_answer(_check_str(pred, "pred"))
    return float(any(target == normalize_answer(g) for g in _ref_list(gold, "gold")))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:  # SQuAD v1.1: also 0 when both are empty
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, gold: Refs) -> float:
    """Token-overlap F1 of normalised answers, max over the golds (SQuAD v1.1)."""
    tokens = normalize_answer(_check_str(pred, "pred")).split()
    return max(_f1(tokens, normalize_answer(g).split()) for g in _ref_list(gold, "gold"))


# Perplexity ------------------------------------------------------------------------------------


def perplexity(texts: Sequence[str], model: Any, tokenizer: Any, batch_size: int = 8,
               max_length: int | None = None) -> list[float]:
    """Perplexity of each text under a Hugging Face causal LM: exp(mean token negative log-likelihood).

    Each text is tokenised on its own (with the tokenizer's special tokens; truncated to
    ``max_length`` tokens when given); every token after the first is predicted from the ones before
    it. Texts are batched by length with right padding and an attention mask, so padding never
    changes a score. A text needs at least two tokens.
    """
    import torch
    import torch.nn.functional as F

    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = [_check_str(t, f"texts[{i}]") for i, t in enumerate(texts)]
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=True, truncation=max_length is not None,
                        max_length=max_length)["input_ids"]
    for i, ids in enumerate(encoded):
        if len(ids) < 2:
            raise ValueError(f"texts[{i}] has {len(ids)} token(s); perplexity needs at least 2")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    result = [math.nan] * len(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                ids, mask = ids.to(device), mask.to(device)
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
                target_mask = mask[:, 1:].to(nll.dtype)
                mean_nll = (nll * target_mask).sum(1) / target_mask.sum(1)
                for row, i in enumerate(idx):
                    result[i] = math.exp(float(mean_nll[row]))
    finally:
        model.train(was_training)
    return result
