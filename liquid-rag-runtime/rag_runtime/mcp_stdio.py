"""The MCP server over stdio (``python -m rag_runtime mcp --index IDX``), for desktop clients.

Stdout carries MCP messages and nothing else. The MCP SDK's ``stdio_server`` points file
descriptor 1 at stderr while it serves (and writes the protocol through a private duplicate), so
a stray ``print`` or a C library's output during a tool call goes to stderr; before that, while
this module starts up, ``sys.stdout`` and descriptor 1 are sent to stderr too (``stdout_to_stderr``).
Logs go to stderr. The index is loaded on the first tool call, not before the client's
``initialize`` (loading the query encoder takes seconds, and a missing or damaged index must come
back as a tool error with the server still up, not as a server that died at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from rag_runtime.index import DEFAULT_ALLOWED_EMBEDDING_MODELS

log = logging.getLogger("rag_runtime.mcp")


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send ``sys.stdout`` and descriptor 1 to stderr inside the block; restore both after it."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_stdio(folder: str | Path, *, answer_mode: str = "auto", answer_style: str = "generative",
              allowed_modes: Sequence[str] | None = None, allowed_styles: Sequence[str] | None = None,
              support: str = "flag", allowed_embedding_models: Collection[str] = DEFAULT_ALLOWED_EMBEDDING_MODELS,
              answer_timeout_s: float | None = 120.0) -> None:
    """Serve the MCP tools over ``folder`` on stdin/stdout until the client closes stdin."""
    with stdout_to_stderr():
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        from rag_runtime.agent_pool import AgentPool
        from rag_runtime.mcp_server import Backend, build_mcp_server

        options = dict(answer_mode=answer_mode, answer_style=answer_style, allowed_modes=allowed_modes,
                       allowed_styles=allowed_styles, support=support)
        AgentPool(None, None, **options)  # bad options fail now (a usage error), not on every call; makes nothing

        def make_pool(index):
            return AgentPool(index.retriever("hybrid" if index.dense else "bm25"), **options)

        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            log.warning("%s: no index folder there (no manifest.json); every tool call will say so until one is built",
                        folder)
        backend = Backend(folder=folder, make_pool=make_pool, allowed_embedding_models=allowed_embedding_models)
        server = build_mcp_server(backend, answer_timeout_s=answer_timeout_s)
    server.run("stdio", show_banner=False)

