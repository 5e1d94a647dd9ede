"""Defaults that depend on where the project is: the output folder and the default ETL run."""

from __future__ import annotations

from pathlib import Path


def default_output_dir() -> Path:
    """``<project root>/results/experiments`` (git-ignored); the root is found from the working folder."""
    from liquid_shared.tracking import project_root

    return project_root() / "results" / "experiments"
