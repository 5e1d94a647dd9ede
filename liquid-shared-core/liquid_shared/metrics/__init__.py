"""Evaluation metrics: ranking (``ir``, trec_eval definitions) and text generation (``generation``)."""

from liquid_shared.metrics.generation import (
    bleu_corpus,
    bleu_sentence,
    exact_match,
    normalize_answer,
    perplexity,
    rouge,
    rouge_per_item,
    token_f1,
)
from liquid_shared.metrics.ir import IRResult, MetricSpec, Qrels, Run, evaluate, parse_metric

__all__ = ["IRResult", "MetricSpec", "Qrels", "Run", "bleu_corpus", "bleu_sentence", "evaluate", "exact_match",
           "normalize_answer", "parse_metric", "perplexity", "rouge", "rouge_per_item", "token_f1"]
