"""Fixtures shared by the whole suite, and the test tiers.

Tiers (README.md, "Tests in tiers"): bare ``pytest`` runs the fast tier, everything not marked ``slow`` or as
needing a component (``llama_server``, ``browser``, ``ray``, ``torchrun``); ``make test`` runs
every test with ``LIQUID_REQUIRE_COMPONENTS=1``, under which a test that needs a component and
skips for want of it FAILS, so a missing server or browser cannot pass unnoticed. Tests are
marked from the fixtures they use too (``FIXTURE_MARKERS``), so a new test that takes
``llama_server`` lands in its tier without anyone remembering to mark it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

COMPONENT_MARKERS = ("llama_server", "browser", "ray", "torchrun")
# a fixture -> the marker every test using it gets
FIXTURE_MARKERS = {
    "llama_server": "llama_server",
    "smollm2_dir": "real_model",
    "causal_lm": "real_model",
    "tiny_lfm2_dir": "real_model",
    "tiny_lfm2_tools_dir": "real_model",
    "tiny_llama_dirs": "real_model",
    "shared_data_dir": "shared_data",
    "scifact_dir": "shared_data",
    "wikipedia_articles": "shared_data",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("LIQUID_REQUIRE_COMPONENTS") != "1":
        return
    needed = [m for m in COMPONENT_MARKERS if item.get_closest_marker(m)]
    if needed:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"LIQUID_REQUIRE_COMPONENTS=1 (make test): this test needs {', '.join(needed)} and was "
                           f"skipped: {reason}")
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
