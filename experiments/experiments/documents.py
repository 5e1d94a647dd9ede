"""The settings shared by the experiments that run the ETL themselves (dual_pipeline, model_ablation).

``DocumentsConfig`` is their config base: a ``documents`` folder (default: the ETL's own default
input, ``data/samples``), checked to be an existing folder and made absolute so that every ETL
worker process reads the same files whatever its working folder, and ``n_runs``, how often each
pipeline variant runs (these are the experiments that measure time and sample).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from experiments.base import ExperimentConfig


def default_documents() -> Path:
    """The ETL's default input folder (``data/samples`` of the project)."""
    from etl_pipeline import DEFAULT_INPUT_DIR

    return DEFAULT_INPUT_DIR


class DocumentsConfig(ExperimentConfig):
    """An experiment that runs the ETL on a folder of documents (``--documents``), ``n_runs`` times."""

    n_runs: int = Field(1, ge=1, le=100, description="Runs of every variant (seeds seed, seed + 1, ...) (--n-runs).")
    documents: Path = Field(default_factory=default_documents,
                            description="Folder of input documents (--documents; default: data/samples).")

    @field_validator("documents")
    @classmethod
    def _folder(cls, value: Path) -> Path:
        value = Path(value).expanduser()
        if not value.is_dir():
            raise ValueError(f"documents folder {value} does not exist or is not a folder")
        return value.resolve()
