"""Fixtures for the ETL tests; helpers live in ``etl_helpers`` (this folder is put on sys.path)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from etl_helpers import SAMPLES, ScriptedModels  # noqa: E402


@pytest.fixture
def scripted() -> ScriptedModels:
    return ScriptedModels()


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped samples (tests may edit it)."""
    target = tmp_path / "samples"
    shutil.copytree(SAMPLES, target)
    return target


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow writes into the test's tmp folder, never the project's store."""
    from liquid_shared.config import get_settings

    monkeypatch.setenv("LIQUID_MLFLOW_URI", f"sqlite:///{tmp_path}/mlruns.db")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
