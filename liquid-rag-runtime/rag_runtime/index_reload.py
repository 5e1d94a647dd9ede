"""A new version of the index served without a restart: the swap, its version, its watcher.

Everything the service holds per index (the ``RagIndex`` and the ``AgentPool`` made over its
retriever) lives in one ``ServedIndex``. ``IndexReloader.current`` is the one reference to it;
each request reads it once, at its start, and keeps that object to its end, so a request in
flight during a reload finishes on the version it started on, and no response mixes versions.

* **What is a new version.** The index writer rewrites ``manifest.json`` atomically and last on
  every save, so a change of the manifest's inode, mtime_ns or size means a complete new version
  is in the folder. ``IndexReloader.check()`` (what the watcher runs every ``interval_s``) compares
  that stat with the one seen last; ``reload()`` (``POST /admin/reload``) loads unconditionally.
  The version is reported as the manifest's ``created_at`` and the first 16 hex digits of its
  SHA-256 (``IndexVersion``).
* **The swap.** ``reload()`` loads the new ``RagIndex`` fully (documents, BM25, FAISS; the query
  encoder is reused when the new index names the same embedding model), warms it up, builds its
  ``ServedIndex``, then replaces ``current`` in one assignment. A load that fails (a half-written
  or corrupt folder, a manifest that changed while loading) leaves the old version serving; the
  failure is logged, counted (``rag_index_reloads_total{outcome="failed"}``), flagged
  (``rag_index_reload_failing`` = 1, ``/health``'s ``reload.status``) and answered by the admin
  route with its message. The watcher does not retry the same failed manifest; a new one is tried.
* **Memory.** By default the old and the new index are both in memory during a reload (the old
  one is freed once the last request on it finishes). ``low_memory=True`` drops the old one
  first: ``current`` raises ``IndexReloading`` (the service answers 503 with ``Retry-After``)
  until the new one is in; if that load fails nothing is served, and the watcher tries the folder
  again at every poll until a load succeeds.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel

from rag_runtime.agent_pool import AgentPool
from rag_runtime.index import MANIFEST_FILE, RagIndex
from rag_runtime.mcp_server import Backend, IndexUnavailable

log = logging.getLogger("rag_runtime.reload")
DEFAULT_RELOAD_INTERVAL_S = 5.0
Signature = tuple[int, int, int]  # (inode, mtime_ns, size) of manifest.json


class IndexReloading(RuntimeError):
    """No index is served right now: a low-memory reload is under way (or its load failed)."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"the index is being reloaded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class IndexVersion:
    """Which manifest a loaded index came from."""

    created_at: str
    digest: str  # first 16 hex digits of the manifest's SHA-256
    signature: Signature | None

    @property
    def label(self) -> str:
        return self.digest


@dataclass(frozen=True)
class ServedIndex:
    """What the service holds per index; replaced as a whole on reload."""

    index: RagIndex
    pool: AgentPool
    version: IndexVersion
    loaded_at: float  # time.time()


class ReloadOutcome(BaseModel):
    """The answer of ``POST /admin/reload`` (and the record of the last reload attempt)."""

    status: Literal["reloaded", "failed"]
    version: str | None  # the version served after the attempt (None: nothing served)
    created_at: str | None
    documents: int | None
    previous_version: str | None
    error: str | None = None
    seconds: float


def manifest_signature(folder: Path) -> Signature | None:
    """The stat of ``folder/manifest.json`` that changes with every save, or None when it is missing."""
    try:
        st = os.stat(folder / MANIFEST_FILE)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def version_of(manifest_bytes: bytes, signature: Signature | None) -> IndexVersion:
    try:
        created_at = str(json.loads(manifest_bytes).get("created_at", ""))
    except (ValueError, AttributeError):
        created_at = ""
    return IndexVersion(created_at=created_at, digest=hashlib.sha256(manifest_bytes).hexdigest()[:16],
                        signature=signature)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:500]}"


class ReloadMetrics:
    """The reload's Prometheus metrics, in the service's registry."""

    def __init__(self, registry: CollectorRegistry):
        self.documents = Gauge("rag_index_documents", "Documents in the served index", registry=registry)
        self.reloads = Counter("rag_index_reloads", "Index reload attempts by outcome", ["outcome"], registry=registry)
        self.failing = Gauge("rag_index_reload_failing",
                             "1 when the last reload attempt failed (the previous version is still served)",
                             registry=registry)
        self.seconds = Gauge("rag_index_reload_seconds", "Seconds the last successful index load took", registry=registry)
        self.loaded = Gauge("rag_index_loaded_timestamp_seconds", "When the served index was loaded (Unix time)",
                            registry=registry)
        self.info = Gauge("rag_index_version_info", "The served index version (value 1)", ["version", "created_at"],
                          registry=registry)
        for outcome in ("reloaded", "failed"):
            self.reloads.labels(outcome)

    def served(self, served: ServedIndex | None) -> None:
        self.info.clear()
        if served is None:
            self.documents.set(0)
            return
        self.documents.set(len(served.index.store))
        self.loaded.set(served.loaded_at)
        self.info.labels(served.version.label, served.version.created_at).set(1)


class IndexReloader:
    """Holds the ``ServedIndex`` and replaces it with a new version of ``folder`` (module docstring).

    ``serve(new_index)`` readies a freshly loaded index (query encoder, warm-up) and returns it with
    its agent pool; ``load(folder)`` loads an index folder; ``first_version``: that of ``first``.
    """

    def __init__(self, folder: str | Path | None, first: RagIndex,
                 serve: Callable[[RagIndex], tuple[RagIndex, AgentPool]], *, first_version: IndexVersion,
                 load: Callable[[Path], RagIndex] | None = None, low_memory: bool = False,
                 registry: CollectorRegistry | None = None, retry_after_s: int = 5):
        self.folder = Path(folder) if folder is not None else None
        self._serve, self.loader = serve, load or RagIndex.load
        self.low_memory, self.retry_after_s = low_memory, retry_after_s
        self.metrics = ReloadMetrics(registry or CollectorRegistry())
        self._lock = threading.Lock()  # one reload at a time
        self._failed_signature: Signature | None = None
        self.last: ReloadOutcome | None = None
        self.last_at: float | None = None
        self.reloading = False
        self.reloads = self.failures = 0
        self.interval_s = 0.0  # set by whoever runs the watcher
        self._current: ServedIndex | None = ServedIndex(*serve(first), first_version, time.time())
        self.metrics.served(self._current)

    @property
    def current(self) -> ServedIndex:
        """The version to serve a request with: read once per request (raises ``IndexReloading``)."""
        served = self._current
        if served is None:
            raise IndexReloading(self.retry_after_s)
        return served

    def peek(self) -> ServedIndex | None:
        return self._current

    @property
    def failing(self) -> bool:
        return self.last is not None and self.last.status == "failed"

    def check(self) -> ReloadOutcome | None:
        """Reload when the manifest changed since the served (or the last failed) version; else None."""
        if self.folder is None:
            return None
        signature = manifest_signature(self.folder)
        served = self._current
        if served is not None and signature in (served.version.signature, self._failed_signature):
            return None
        if served is None and signature is None:
            return None
        return self.reload(reason="manifest changed" if served is not None else "retry")

    def reload(self, reason: str = "requested") -> ReloadOutcome:
        """Load the folder's current version and swap it in; on failure keep (or stay without) the old."""
        if self.folder is None:
            raise ValueError("this service was started with an index object, not a folder; it cannot reload")
        with self._lock:
            self.reloading = True
            try:
                outcome = self._reload_locked(reason)
            finally:
                self.reloading = False
            self.last, self.last_at = outcome, time.time()
            if outcome.status == "failed":
                self.failures += 1
            else:
                self.reloads += 1
            return outcome

    def _reload_locked(self, reason: str) -> ReloadOutcome:
        start = time.perf_counter()
        old = self._current
        previous = old.version.label if old is not None else None
        manifest = self.folder / MANIFEST_FILE
        signature = manifest_signature(self.folder)
        if self.low_memory and old is not None:
            self._current = None  # requests from now on get 503 until the new version is in
            self.metrics.served(None)
            del old
            gc.collect()
        try:
            manifest_bytes = manifest.read_bytes()
            index = self.loader(self.folder)
            if manifest_signature(self.folder) != signature:
                raise RuntimeError(f"{manifest} changed while the index was loading; the next poll loads the newer version")
            version = version_of(manifest_bytes, signature)
            served = ServedIndex(*self._serve(index), version, time.time())
        except Exception as exc:
            self._failed_signature = signature
            self.metrics.reloads.labels("failed").inc()
            self.metrics.failing.set(1)
            current = self._current
            log.error("index reload of %s failed (%s); %s", self.folder, reason,
                      f"still serving version {current.version.label}" if current else "no index is served", exc_info=True)
            return ReloadOutcome(status="failed", version=current.version.label if current else None,
                                 created_at=current.version.created_at if current else None,
                                 documents=len(current.index.store) if current else None, previous_version=previous,
                                 error=_one_line(exc), seconds=time.perf_counter() - start)
        self._current = served  # the swap: requests that start from now on get the new version
        self._failed_signature = None
        seconds = time.perf_counter() - start
        self.metrics.reloads.labels("reloaded").inc()
        self.metrics.failing.set(0)
        self.metrics.seconds.set(seconds)
        self.metrics.served(served)
        log.warning("index %s reloaded (%s): version %s (%s, %d documents) replaces %s in %.2f s", self.folder, reason,
                    version.label, version.created_at, len(served.index.store), previous, seconds)
        return ReloadOutcome(status="reloaded", version=version.label, created_at=version.created_at,
                             documents=len(served.index.store), previous_version=previous, seconds=seconds)

    def health(self) -> dict[str, Any]:
        """The reload part of ``/health`` (no error text: ``/health`` is open; the admin route has it)."""
        return {"status": "reloading" if self.reloading else "failed" if self.failing else "ok",
                "interval_s": self.interval_s, "reloads": self.reloads, "failures": self.failures,
                "last_attempt_at": _iso(self.last_at)}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class CurrentPool:
    """The current version's ``AgentPool``, looked up on each call (for the chat API, which keeps
    one pool object): ``agent(...)`` is the served pool's, the allow-lists are the server's."""

    def __init__(self, reloader: IndexReloader):
        self._reloader = reloader
        first = reloader.current.pool
        self.allowed_modes, self.allowed_styles = first.allowed_modes, first.allowed_styles
        self.answer_mode, self.answer_style, self.support = first.answer_mode, first.answer_style, first.support

    def agent(self, *args, **kwargs):
        return self._reloader.current.pool.agent(*args, **kwargs)

    def choice(self, *args, **kwargs):
        return self._reloader.current.pool.choice(*args, **kwargs)


class ReloadingBackend(Backend):
    """The MCP tools' backend: the reloader's current version, looked up on each call."""

    def __init__(self, reloader: IndexReloader):
        served = reloader.current
        super().__init__(index=served.index, pool=served.pool)
        self._loaded = None  # the reloader holds the version; keep no reference to the first one
        self.reloader = reloader

    def ready(self) -> tuple[RagIndex, AgentPool] | None:
        served = self.reloader.peek()
        return (served.index, served.pool) if served is not None else None

    def load(self) -> tuple[RagIndex, AgentPool]:
        try:
            served = self.reloader.current
        except IndexReloading as exc:
            raise IndexUnavailable(str(exc)) from exc
        return served.index, served.pool

    async def get(self) -> tuple[RagIndex, AgentPool]:
        return self.load()
