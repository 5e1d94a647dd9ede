"""The experiments by name: each module registers its run function with its config type.

    @register("rag_quality", RagQualityConfig, "Retrieval variants on a BEIR folder or an ETL run")
    def run(config: RagQualityConfig, ctx: RunContext) -> ExperimentResult: ...

Every experiment is one module in ``experiments/catalog/`` (the machinery that runs them, this
registry, the runner, configs and reports, lives beside that folder). A new module there is found
without being listed anywhere; ``PREFERRED_ORDER`` only fixes the order ``--all`` runs them in
(the rest follow alphabetically). Experiment modules import only light modules at the top, so
listing the registry is fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from experiments.base import ExperimentConfig, ExperimentResult, RunContext

RunFunction = Callable[[ExperimentConfig, RunContext], ExperimentResult]

CATALOG = "experiments.catalog"
# The order ``--all`` runs these in; catalog modules not named here follow, alphabetically.
PREFERRED_ORDER = ("rag_quality", "dual_pipeline", "model_ablation", "ft_quality")


def experiment_modules() -> tuple[str, ...]:
    """Dotted names of the catalog's experiment modules, in ``--all`` order."""
    import experiments.catalog as catalog

    found = sorted(m.name for m in pkgutil.iter_modules(catalog.__path__) if not m.name.startswith("_"))
    ordered = [n for n in PREFERRED_ORDER if n in found] + [n for n in found if n not in PREFERRED_ORDER]
    return tuple(f"{CATALOG}.{name}" for name in ordered)


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
    for module in experiment_modules():
        importlib.import_module(module)


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment, in ``--all`` order."""
    _load_all()
    order = {m.rsplit(".", 1)[-1]: i for i, m in enumerate(experiment_modules())}
    return dict(sorted(_REGISTRY.items(), key=lambda kv: order.get(kv[0], len(order))))


def get_experiment(name: str) -> Experiment:
    experiments = all_experiments()
    if name not in experiments:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(experiments)} (see --list)")
    return experiments[name]
