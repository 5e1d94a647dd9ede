"""The README's tour, command by command, as a newcomer types it.

The commands are read out of the README (between ``<!-- tour`` and ``<!-- /tour -->``), so the
README cannot drift from what works. They run in a scratch folder holding the shipped samples (so a
developer's own ``data/runs`` is not touched), with MLflow in that folder: ``make X`` runs the
recipe the Makefile gives for X, ``source .venv/bin/activate`` puts this interpreter's scripts on
PATH, and the two servers (``serve``, ``tracking-server``) are started on free ports, asked for
their health and a search, then stopped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def tour_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tour.*?```bash\n(.*?)```\s*<!-- /tour -->", text, re.S)
    assert block, "README.md has no tour block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def make_recipe(target: str) -> list[str]:
    """The last command ``make -n TARGET`` prints (make's own prerequisites are up to date here)."""
    out = subprocess.run(["make", "-s", "-n", target, f"BIN={BIN}"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    lines = [line for line in out.splitlines() if line.strip() and not line.lstrip().startswith(("#", "@", "if "))]
    return shlex.split(lines[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen, timeout: float = 300.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} within {timeout:.0f} s")


def test_the_readme_tour_works_command_by_command(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples").symlink_to(REPO / "data" / "samples")
    env = {**os.environ, "LIQUID_MLFLOW_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    commands = tour_commands()
    assert commands[0] == "make run" and any(c.startswith("liquid rag serve") for c in commands)
    for command in commands:
        if command == "source .venv/bin/activate":
            env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
            continue
        argv = make_recipe(command.split()[1]) if command.startswith("make ") else shlex.split(command)
        if command.startswith("liquid rag serve") or command == "make tracking-server":
            port = free_port()
            if command == "make tracking-server":
                argv = [env["LIQUID_MLFLOW_URI"] if a.startswith("sqlite:///") else
                        str(tmp_path / "mlartifacts") if a.endswith("mlartifacts") else a for a in argv]
                argv += ["--port", str(port), "--store", str(tmp_path / "mlflow-server")]
                url = f"http://127.0.0.1:{port}/health"
            else:
                argv += ["--port", str(port)]
                url = f"http://127.0.0.1:{port}/health"
            server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
            try:
                wait_for(url, server)
                if command.startswith("liquid rag serve"):
                    request = urllib.request.Request(f"http://127.0.0.1:{port}/search", method="POST",
                                                     data=json.dumps({"query": "what causes tides", "k": 2}).encode(),
                                                     headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=60) as response:
                        assert json.loads(response.read())["hits"]
            finally:
                server.terminate()
                server.wait(timeout=60)
            continue
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        if command.startswith("liquid rag search"):
            assert "sourdough" in done.stdout.lower()
        if command.startswith("liquid rag ask"):
            answer = json.loads(done.stdout)
            assert answer["citations"] or answer["refused"], answer
    run = tmp_path / "data" / "runs" / "samples-offline"
    report = json.loads((run / "report.json").read_text())
    assert report["mlflow"]["ok"] and (run / "chunks.jsonl").stat().st_size > 0
