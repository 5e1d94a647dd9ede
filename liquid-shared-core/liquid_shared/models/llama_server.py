"""Run llama.cpp's OpenAI-compatible ``llama-server`` on loopback, e.g. over the bundled SmolLM2 GGUF.

The binary is built from the ``llama-cpp-python`` sdist by ``scripts/build_llama_server.sh``
(``make install`` runs it) into ``<cache_dir>/llama-server/<version>/llama-server``; set
``LIQUID_LLAMA_SERVER`` to use another binary. The tests' session fixture and the remote-engine
benchmarks start one with ``LlamaServer(...)``:

    with LlamaServer(smollm2_gguf_path(), parallel=4) as server:
        spec = ModelSpec(model="smollm2", backend="openai", base_url=server.base_url)
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from liquid_shared.config import get_settings

LLAMA_SERVER_VERSION = "0.3.36"  # the llama-cpp-python sdist it is built from (scripts/build_llama_server.sh)


class LlamaServerMissing(FileNotFoundError):
    """The ``llama-server`` binary has not been built here."""


def llama_server_binary() -> Path:
    """Path of the ``llama-server`` binary; raises ``LlamaServerMissing`` with the command that builds it."""
    explicit = os.environ.get("LIQUID_LLAMA_SERVER")
    path = Path(explicit) if explicit else get_settings().cache_dir / "llama-server" / LLAMA_SERVER_VERSION / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LlamaServerMissing(
            f"llama-server not found at {path}; build it with `scripts/build_llama_server.sh` (make install runs it, "
            "~10 minutes on 2 cores, needs cmake and a C++ compiler), or point LIQUID_LLAMA_SERVER at a binary"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """A ``llama-server`` child process on ``127.0.0.1`` (``parallel`` slots, continuous batching)."""

    def __init__(self, gguf: Path, *, parallel: int = 4, ctx_per_slot: int = 2048, threads: int = 2,
                 api_key: str | None = None, alias: str = "smollm2-135m-instruct", log_path: Path | None = None,
                 startup_timeout_s: float = 120.0):
        self.gguf, self.parallel, self.api_key, self.alias = Path(gguf), parallel, api_key, alias
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.args = [
            str(llama_server_binary()), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(parallel), "-c", str(ctx_per_slot * parallel), "-t", str(threads),
            "--jinja", "--alias", alias, "--no-webui",
        ] + (["--api-key", api_key] if api_key else [])
        self.process: subprocess.Popen | None = None

    def start(self) -> LlamaServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with code {self.process.returncode} at start: "
                                   f"{' '.join(self.args)} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama-server did not become healthy within {self.startup_timeout_s:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
