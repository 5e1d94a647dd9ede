"""Experiments over the Liquid stack; run them with ``python run_experiments.py`` (see docs/experiments.md).

Public surface (imported lazily, so ``import experiments`` stays cheap):

* running: ``run_experiments``, ``get_experiment``, ``all_experiments``, ``read_config_file``,
  ``ConfigFile``, ``Outcome``, ``build_report``
* writing an experiment: ``register``, ``ExperimentConfig``, ``ExperimentResult``, ``RunContext``
* the experiments' configs: ``RagQualityConfig``, ``DualPipelineConfig``, ``ModelAblationConfig``,
  ``FtQualityConfig`` (and ``VariantSpec``, ``AblationVariant``, ``FtSetSpec``)
* pieces other code may reuse: ``FreeDecodingModel`` (structured output without the grammar),
  ``independent_table``, ``paired_table``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_experiments": "experiments.runner",
    "Outcome": "experiments.runner",
    "get_experiment": "experiments.registry",
    "all_experiments": "experiments.registry",
    "register": "experiments.registry",
    "read_config_file": "experiments.config_file",
    "ConfigFile": "experiments.config_file",
    "build_report": "experiments.report",
    "ExperimentConfig": "experiments.base",
    "ExperimentResult": "experiments.base",
    "RunContext": "experiments.base",
    "RagQualityConfig": "experiments.catalog.rag_quality",
    "VariantSpec": "experiments.retrieval_variants",
    "DualPipelineConfig": "experiments.catalog.dual_pipeline",
    "ModelAblationConfig": "experiments.catalog.model_ablation",
    "AblationVariant": "experiments.catalog.model_ablation",
    "FtQualityConfig": "experiments.catalog.ft_quality",
    "FtSetSpec": "experiments.catalog.ft_quality",
    "IsotropicBeirConfig": "experiments.catalog.isotropic_beir",
    "FreeDecodingModel": "experiments.free_decoding",
    "independent_table": "experiments.significance",
    "paired_table": "experiments.significance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
