"""The one place that calls the ETL: its synchronous entry point, whatever its current name.

``etl_pipeline`` exports ``run(config, ...)`` (earlier ``run_etl``, which a submodule of the same
name shadowed once imported); this resolves the function, never a module.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def run_etl_sync(config: Any, **kwargs: Any) -> Any:
    """``etl_pipeline.run(config, **kwargs)``: returns its ``RunResult``."""
    import etl_pipeline

    fn = getattr(etl_pipeline, "run", None)
    if fn is None or isinstance(fn, ModuleType) or not callable(fn):
        from etl_pipeline import runner

        fn = getattr(runner, "run", None) or runner.run_etl
    return fn(config, **kwargs)
