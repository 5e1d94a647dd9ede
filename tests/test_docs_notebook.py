"""The notebook in docs/ is executed, so it cannot rot: the ETL runs inside Jupyter's event loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "notebooks" / "etl_from_a_notebook.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def test_the_etl_notebook_runs_in_a_real_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path / "run"
    monkeypatch.setenv("LIQUID_NOTEBOOK_OUTPUT", str(out))
    monkeypatch.setenv("LIQUID_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    report = json.loads((out / "report.json").read_text())
    assert report["this_run"]["skipped_unchanged"] == 1  # the second, awaited run skipped the done document
    assert report["mlflow"]["ok"] is True  # run_async logged to MLflow too
    assert os.path.getsize(tmp_path / "mlruns.db") > 0
