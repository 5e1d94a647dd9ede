"""``ModelRegistry``: each ``ModelSpec`` loaded once and shared, under a memory budget.

* One load per spec, however many agents ask (a per-spec lock makes concurrent first callers
  wait for the one load instead of loading twice).
* The summed weight bytes of loaded models stay under ``budget_bytes``. Before a load we estimate
  the new model's bytes from its config (built on the meta device) and *reserve* them under the
  registry lock, so two different specs loading at once count each other; if the new model does
  not fit, the least recently used *idle* model is unloaded first (idle: no caller holds it and
  its batchers have no live rows). A model bigger than the whole budget, or one that only fits by
  unloading models in use or loading, raises ``OverBudgetError`` naming the numbers.
* ``in_use`` is released on every path, including a caller cancelled while its model loads (the
  load finishes in its thread and the hold is dropped when it does).
* Remote specs (``backend="openai"``) are held too, as a ``RemoteEngine``: no weights, no budget.
* ``cleanup()`` really frees memory: drop every reference, ``gc.collect()``,
  ``torch.cuda.empty_cache()``.
* Safe from threads and from many coroutines: state is guarded by a lock, loads run in a worker
  thread, and generation goes through one ``MicroBatcher`` per model and event loop.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from liquid_shared import compute_thread
from liquid_shared.config import get_settings
from liquid_shared.models.backend import GenRequest, GenResult, LocalLiquidModel
from liquid_shared.models.batcher import MicroBatcher
from liquid_shared.models.errors import ModelBusy, OverBudgetError
from liquid_shared.models.loading import estimate_weight_bytes, placement_for, resolve_source
from liquid_shared.models.spec import ModelSpec


@dataclass
class _Entry:
    backend: Any  # LocalLiquidModel, or a RemoteEngine for a remote spec
    last_used: float
    in_use: int = 0
    batchers: Any = field(default_factory=weakref.WeakKeyDictionary)

    def live_rows(self) -> int:
        """Requests queued or decoding in this model's batchers (callers may have gone away)."""
        return sum(b.live_rows for b in list(self.batchers.values()))

    def idle(self) -> bool:
        return self.in_use == 0 and self.live_rows() == 0


def _gib(n: int | float) -> str:
    return f"{n / 2**30:.2f} GiB"


class ModelRegistry:
    def __init__(self, budget_bytes: int | None = None):
        if budget_bytes is None and get_settings().memory_budget_gb is not None:
            budget_bytes = int(get_settings().memory_budget_gb * 2**30)
        self._budget = budget_bytes
        self._entries: dict[ModelSpec, _Entry] = {}
        self._lock = threading.RLock()
        self._load_locks: dict[ModelSpec, threading.Lock] = {}
        self._reserved: dict[ModelSpec, int] = {}  # bytes of loads in progress, counted in the budget
        self.load_counts: Counter[ModelSpec] = Counter()
        self.unload_counts: Counter[ModelSpec] = Counter()
        self.peak_weight_bytes = 0
        self.events: list[tuple[str, str]] = []  # ("load" | "unload", model), in order

    # ----------------------------------------------------------------- state
    @property
    def budget_bytes(self) -> int:
        if self._budget is None:
            from liquid_shared.devices import free_device_memory_bytes, resolve_placement

            self._budget = int(0.8 * free_device_memory_bytes(resolve_placement(get_settings().device).device))
        return self._budget

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(e.backend.weight_bytes for e in self._entries.values())

    def loaded_specs(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._entries)

    def is_loaded(self, spec: ModelSpec) -> bool:
        with self._lock:
            return spec in self._entries

    # --------------------------------------------------------------- loading
    def acquire(self, spec: ModelSpec) -> LocalLiquidModel:
        """Return the loaded model (loading it if needed) and mark it in use; pair with ``release``."""
        with self._lock:
            load_lock = self._load_locks.setdefault(spec, threading.Lock())
        with load_lock:
            with self._lock:
                entry = self._entries.get(spec)
                if entry is not None:
                    entry.in_use += 1
                    entry.last_used = time.monotonic()
                    return entry.backend
            if spec.is_remote:
                from liquid_shared.models.remote import RemoteEngine

                backend = RemoteEngine(spec)
            else:
                self._reserve(spec)
                try:
                    backend = compute_thread.run(LocalLiquidModel, spec)  # torch work on one thread
                finally:
                    with self._lock:
                        self._reserved.pop(spec, None)
            with self._lock:
                self._entries[spec] = _Entry(backend=backend, last_used=time.monotonic(), in_use=1)
                self.load_counts[spec] += 1
                self.events.append(("load", spec.model))
                self.peak_weight_bytes = max(self.peak_weight_bytes, self.loaded_bytes)
            return backend

    def release(self, spec: ModelSpec) -> None:
        with self._lock:
            entry = self._entries.get(spec)
            if entry is not None:
                entry.in_use = max(0, entry.in_use - 1)
                entry.last_used = time.monotonic()

    def get(self, spec: ModelSpec) -> LocalLiquidModel:
        """Load (once) and return the model without holding it in use (for direct, synchronous use)."""
        backend = self.acquire(spec)
        self.release(spec)
        return backend

    def _reserve(self, spec: ModelSpec) -> None:
        """Check the budget and reserve ``spec``'s estimated bytes, under one lock with the loads
        in progress counted, unloading idle LRU models to make room."""
        source, extra = resolve_source(spec)  # fails fast on unknown ids / missing paths
        placement = placement_for(spec)
        need = estimate_weight_bytes(source, extra, placement)
        budget = self.budget_bytes
        if need > budget:
            raise OverBudgetError(
                f"model {spec.model!r} needs about {_gib(need)} of weights but the registry budget is "
                f"{_gib(budget)}; raise LIQUID_MEMORY_BUDGET_GB, pick a smaller model, or use dtype='bf16'"
            )
        with self._lock:
            while self.loaded_bytes + sum(self._reserved.values()) + need > budget:
                idle = [(e.last_used, s) for s, e in self._entries.items() if e.idle()]
                if not idle:
                    busy = ", ".join([s.model for s in self._entries] + [f"{s.model} (loading)" for s in self._reserved])
                    raise OverBudgetError(
                        f"model {spec.model!r} ({_gib(need)}) does not fit the {_gib(budget)} budget next to "
                        f"models in use ({busy}); wait for them to finish or raise the budget"
                    )
                self._unload_locked(min(idle, key=lambda t: t[0])[1])
            self._reserved[spec] = need

    # ------------------------------------------------------------- unloading
    def _unload_locked(self, spec: ModelSpec) -> None:
        entry = self._entries.pop(spec)
        entry.backend.close()
        self.unload_counts[spec] += 1
        self.events.append(("unload", spec.model))
        del entry
        _free_memory()

    def unload(self, spec: ModelSpec) -> bool:
        """Unload one idle model; returns False if it was not loaded. Raises ``ModelBusy`` while a
        caller holds it or its batchers still have rows queued or decoding."""
        with self._lock:
            entry = self._entries.get(spec)
            if entry is None:
                return False
            if not entry.idle():
                raise ModelBusy(
                    f"model {spec.model!r} is in use ({entry.in_use} caller(s), {entry.live_rows()} live row(s)); "
                    "cannot unload it until they finish"
                )
            self._unload_locked(spec)
            return True

    def in_use(self, spec: ModelSpec) -> int:
        """Callers holding ``spec`` now (0 when it is idle or not loaded)."""
        with self._lock:
            entry = self._entries.get(spec)
            return entry.in_use if entry else 0

    def cleanup(self) -> None:
        """Unload every idle model and return the memory (gc + CUDA cache)."""
        with self._lock:
            for spec in [s for s, e in self._entries.items() if e.idle()]:
                self._unload_locked(spec)
        _free_memory()

    # ------------------------------------------------------------ generation
    async def hold(self, spec: ModelSpec) -> Any:
        """``acquire`` in a worker thread, safe against cancellation: a caller cancelled while the
        model loads does not leave it held (the hold is released when the load finishes)."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, self.acquire, spec)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() or self.release(spec))
            raise

    def batcher(self, spec: ModelSpec) -> MicroBatcher:
        """The micro-batcher of a loaded local ``spec`` for the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries[spec]
            batcher = entry.batchers.get(loop)
            if batcher is None:
                batcher = entry.batchers[loop] = MicroBatcher(entry.backend, spec.batch_limit)
            return batcher

    async def generate(self, spec: ModelSpec, req: GenRequest) -> GenResult:
        """Generate through the model's micro-batcher for the running event loop."""
        await self.hold(spec)
        try:
            return await self.batcher(spec).submit(req)
        finally:
            self.release(spec)

    def batch_sizes(self, spec: ModelSpec) -> list[int]:
        """Requests admitted per prefill for ``spec`` (across event loops still alive)."""
        with self._lock:
            entry = self._entries.get(spec)
            return [n for b in entry.batchers.values() for n in b.batches] if entry else []


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    try:  # return freed heap pages to the OS on glibc, so RSS reflects the unload
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


_registry: ModelRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry every agent shares."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = ModelRegistry()
        return _registry
