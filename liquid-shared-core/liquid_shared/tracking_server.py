"""A shared MLflow tracking server for a team: ``python -m liquid_shared.tracking_server``.

It runs ``mlflow server`` with a sqlite backend store (runs, params, metrics, tags) and an
artifact root it serves itself (``--serve-artifacts``: clients upload and download artifacts
through the server over HTTP, so they need no access to its disk). Everyone then logs to it with
``--mlflow-uri http://HOST:PORT`` or ``LIQUID_MLFLOW_URI=http://HOST:PORT``; every run still
keeps its local copy (``liquid_shared.tracking``), so a dead server loses nothing.

For more than a handful of concurrent writers use PostgreSQL instead of sqlite
(``--backend-store-uri postgresql://user:pass@host/db``; needs ``psycopg2``) and an object store
as the artifact destination (``s3://bucket/path``); the command is otherwise the same.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_STORE = Path("mlflow-server")
"""Default folder (under the working directory) of the server's ``mlflow.db`` and ``artifacts/``."""


def server_command(store: Path, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
                   backend_store_uri: str | None = None, artifacts_destination: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for a store folder (sqlite file and artifact folder inside it)."""
    store = Path(store).absolute()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", artifacts_destination or str(store / "artifacts"),
        "--serve-artifacts",
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 300.0) -> None:
    """Poll ``<url>/health`` until the server answers; raises if it exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the MLflow server exited with code {process.returncode} before answering at {url}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the MLflow server did not answer at {url}/health within {timeout:.0f} s")


def main(
    store: Annotated[Path, typer.Option(help="Folder of the sqlite store (mlflow.db) and the artifact root (artifacts/).")] = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Interface to bind: 127.0.0.1 for this machine only, 0.0.0.0 for the team's network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
    backend_store_uri: Annotated[
        str | None, typer.Option(help="Instead of the sqlite file: e.g. postgresql://user:pass@db-host/mlflow.")
    ] = None,
    artifacts_destination: Annotated[str | None, typer.Option(help="Instead of STORE/artifacts: e.g. s3://bucket/mlflow.")] = None,
) -> None:
    """Start a shared MLflow tracking server (runs in the foreground; Ctrl-C stops it)."""
    store.mkdir(parents=True, exist_ok=True)
    command = server_command(store, host=host, port=port, workers=workers, backend_store_uri=backend_store_uri,
                             artifacts_destination=artifacts_destination)
    typer.echo(f"MLflow tracking server at http://{host}:{port} (store {store.absolute()}); log to it with "
               f"LIQUID_MLFLOW_URI=http://{host}:{port}")
    raise typer.Exit(subprocess.call(command))


if __name__ == "__main__":
    typer.run(main)
