"""Isotropic Gaussian retrieval encoder (LeJEPA's SIGReg on a sentence-transformers base).

Public surface: ``IsotropicGaussianEncoder``, ``SIGReg``, ``sigreg``, ``epps_pulley_statistic``,
``epps_pulley_distance``, ``covariance_identity_penalty``, ``ObjectiveConfig``, ``EncoderObjective``,
``info_nce``, ``PairSet``, ``pairs_from_beir``, ``pairs_from_jsonl``, ``pairs_from_etl_run``, ``with_bm25_negatives``,
``EncoderTrainConfig``, ``train_encoder``, ``base_vectors``, ``head_vectors``, ``isotropy_report``,
``evaluate_encoder``, ``write_corpus_sample``. CLI: ``python -m liquid_lvm.encoder --help``.
"""

from liquid_lvm.encoder.corpus_sample import write_corpus_sample
from liquid_lvm.encoder.diagnostics import (
    effective_rank,
    isotropy_report,
    mean_random_cosine,
    spectrum,
)
from liquid_lvm.encoder.evaluation import (
    RetrievalSet,
    evaluate_encoder,
    evaluate_vectors,
    retrieval_set_from_beir,
)
from liquid_lvm.encoder.model import EncoderModelError, IsotropicGaussianEncoder
from liquid_lvm.encoder.objective import EncoderObjective, ObjectiveConfig, info_nce
from liquid_lvm.encoder.pairs import (
    PairDataError,
    PairSet,
    pairs_from_beir,
    pairs_from_etl_run,
    pairs_from_jsonl,
    with_bm25_negatives,
)
from liquid_lvm.encoder.sigreg import (
    NULL_MEAN,
    SIGReg,
    covariance_identity_penalty,
    epps_pulley_distance,
    epps_pulley_statistic,
    random_directions,
    sigreg,
)
from liquid_lvm.encoder.training import (
    EncoderTrainConfig,
    base_vectors,
    head_vectors,
    train_encoder,
)

__all__ = ["NULL_MEAN", "EncoderModelError", "EncoderObjective", "EncoderTrainConfig", "IsotropicGaussianEncoder",
           "ObjectiveConfig", "PairDataError", "PairSet", "RetrievalSet", "SIGReg", "base_vectors",
           "covariance_identity_penalty", "effective_rank", "epps_pulley_distance", "epps_pulley_statistic",
           "evaluate_encoder", "evaluate_vectors", "head_vectors", "info_nce", "isotropy_report",
           "mean_random_cosine", "pairs_from_beir", "pairs_from_etl_run", "pairs_from_jsonl", "random_directions",
           "retrieval_set_from_beir", "sigreg", "spectrum", "train_encoder", "with_bm25_negatives",
           "write_corpus_sample"]
