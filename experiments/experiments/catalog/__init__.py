"""The experiments, one module each; ``experiments.registry`` finds every module in this folder.

An experiment module defines a pydantic config (subclass of ``experiments.base.ExperimentConfig``)
and a ``run(config, ctx) -> ExperimentResult`` registered with ``@register(name, Config, summary)``,
where ``name`` is the module's own name.
"""
