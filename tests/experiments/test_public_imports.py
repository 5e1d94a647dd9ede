"""The experiments use other packages through their public names only: what they need is exported
from ``etl_pipeline`` and ``liquid_shared`` (lazily), and no experiments module reaches into an ETL
submodule or the model layer's internals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import experiments

INTERNAL = re.compile(r"^\s*(from etl_pipeline\.\w+ import|import etl_pipeline\.|from liquid_shared\.models\.\w+ import)")


@pytest.mark.slow
def test_the_names_the_experiments_use_are_exported():
    import etl_pipeline
    import liquid_shared
    from etl_pipeline import config, dedup, grounding, progress
    from liquid_shared.models import loading

    assert etl_pipeline.DEFAULT_INPUT_DIR == config.DEFAULT_INPUT_DIR
    assert etl_pipeline.grounding_score is grounding.grounding_score
    assert etl_pipeline.near_duplicate_mask is dedup.near_duplicate_mask
    assert etl_pipeline.RichEvents is progress.RichEvents
    assert liquid_shared.resolve_source is loading.resolve_source
    for name in ("DEFAULT_INPUT_DIR", "grounding_score", "near_duplicate_mask", "RichEvents", "run", "EtlConfig"):
        assert name in etl_pipeline.__all__, name
    for name in ("resolve_source", "ModelLoadError", "get_registry"):
        assert name in liquid_shared.__all__, name


def test_no_experiments_module_imports_an_internal_module():
    folder = Path(experiments.__file__).parent
    offending = [f"{path.name}:{lineno}: {line.strip()}" for path in sorted(folder.glob("*.py"))
                 for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if INTERNAL.match(line)]
    assert offending == []
