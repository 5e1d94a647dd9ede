"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared evaluation data lives outside the project; LIQUID_DATA_DIR overrides the default.
SHARED_DATA = Path(os.environ.get("LIQUID_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA} (set LIQUID_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scifact_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "beir" / "scifact"
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"BEIR SciFact not found at {path}")
    return path


@pytest.fixture(scope="session")
def wikipedia_articles(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "wikipedia" / "articles.jsonl"
    if not path.is_file():
        pytest.skip(f"Wikipedia articles not found at {path}")
    return path
