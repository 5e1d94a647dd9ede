"""Evaluation metrics: ranking (``ir``, trec_eval definitions), text generation (``generation``) and a QA
validator's kept-pair precision, recall and yield (``kept_pairs``)."""

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
from liquid_shared.metrics.kept_pairs import KeptPairMeasure, is_right, measure_kept_pairs

__all__ = ["IRResult", "KeptPairMeasure", "is_right", "measure_kept_pairs", "MetricSpec", "Qrels", "Run", "bleu_corpus", "bleu_sentence", "evaluate", "exact_match",
           "normalize_answer", "parse_metric", "perplexity", "rouge", "rouge_per_item", "token_f1"]
