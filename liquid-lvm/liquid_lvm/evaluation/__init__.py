"""Judging next-chunk predictors: whole-bank retrieval (FAISS), cosine, direction, rollout,
baselines and paired comparisons."""

from liquid_lvm.evaluation.baselines import (
    BASELINES,
    ContextMean,
    CopyLast,
    RidgeBaseline,
    SuccessorBaseline,
)
from liquid_lvm.evaluation.compare import best_system, compare_with_baseline, per_query_scores
from liquid_lvm.evaluation.evaluate import (
    QUERY_METRICS,
    ModelPredictor,
    SplitEvaluation,
    coherence_diagnostics,
    evaluate_predictor,
    window_arrays,
)
from liquid_lvm.evaluation.retrieval import Bank, BankRanks

__all__ = ["BASELINES", "QUERY_METRICS", "Bank", "BankRanks", "ContextMean", "CopyLast", "ModelPredictor",
           "RidgeBaseline", "SplitEvaluation", "SuccessorBaseline", "best_system", "coherence_diagnostics",
           "compare_with_baseline", "evaluate_predictor", "per_query_scores", "window_arrays"]
