"""The experiments by name: each module registers its run function with its config type.

    @register("rag_quality", RagQualityConfig, "Retrieval variants on a BEIR folder or an ETL run")
    def run(config: RagQualityConfig, ctx: RunContext) -> ExperimentResult: ...

Experiment modules import only light modules at the top, so listing the registry is fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from experiments.base import ExperimentConfig, ExperimentResult, RunContext

RunFunction = Callable[[ExperimentConfig, RunContext], ExperimentResult]

# Modules that define experiments, in the order ``--all`` runs them.
EXPERIMENT_MODULES = (
    "experiments.rag_quality",
    "experiments.dual_pipeline",
    "experiments.model_ablation",
    "experiments.ft_quality",
)


@dataclass(frozen=True)
class Experiment:
    name: str
    config_type: type[ExperimentConfig]
    summary: str
    run: RunFunction


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, config_type: type[ExperimentConfig], summary: str) -> Callable[[RunFunction], RunFunction]:
    """Decorator: make ``run`` available as ``--experiments <name>``."""

    def decorate(run: RunFunction) -> RunFunction:
        _REGISTRY[name] = Experiment(name, config_type, summary, run)
        return run

    return decorate


def _load_all() -> None:
    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment, in ``--all`` order."""
    _load_all()
    order = {m.rsplit(".", 1)[-1]: i for i, m in enumerate(EXPERIMENT_MODULES)}
    return dict(sorted(_REGISTRY.items(), key=lambda kv: order.get(kv[0], len(order))))


def get_experiment(name: str) -> Experiment:
    experiments = all_experiments()
    if name not in experiments:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(experiments)} (see --list)")
    return experiments[name]
