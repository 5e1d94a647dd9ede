"""One thread for the process's torch work: model loads, decode steps, embedding batches.

PyTorch's CPU kernels run their parallel regions on OpenMP (libgomp). libgomp gives every
thread that opens a parallel region its own team of worker threads, and once the process holds
more such threads than it has cores, it stops letting idle workers spin and puts them to sleep
at once (its "throttled" spin count). A decode step of a small model is thousands of tiny
parallel regions, each of which then waits for sleeping workers to wake. Measured here
(docs/benchmarks.md, "One compute thread"): an int8 SmolLM2 decode step took 12 ms when every
torch call ran on one thread and 23 to 27 ms once a second thread (the loading thread, a worker
of ``asyncio.to_thread``) had run torch work too. fp32 steps, with larger kernels, barely moved.

So the batcher's decode calls, the registry's loads and the ETL's embedding batches all run on
this one thread (``run`` from synchronous code, ``call`` from async code). Work submitted while
the thread is busy waits its turn; ``waiting()`` lets a long decode call step aside
(``MicroBatcher`` yields between decode steps while other work waits), so two models in one
process take turns step by step instead of call by call.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_waiting = 0
_waiting_lock = threading.Lock()
_thread_ident: int | None = None


def _mark() -> None:
    global _thread_ident
    _thread_ident = threading.get_ident()


def _pool() -> ThreadPoolExecutor:
    """The executor, started on first use (and again in a forked child, where threads are gone)."""
    global _executor
    with _waiting_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liquid-compute")
            _executor.submit(_mark)
        return _executor


def _forget_after_fork() -> None:
    global _executor, _waiting, _waiting_lock, _thread_ident
    _executor, _waiting, _waiting_lock, _thread_ident = None, 0, threading.Lock(), None


os.register_at_fork(after_in_child=_forget_after_fork)


def on_compute_thread() -> bool:
    return threading.get_ident() == _thread_ident


def waiting() -> int:
    """Calls queued for the compute thread and not started yet."""
    return _waiting


def _submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Submit to the compute thread, counted in ``waiting()`` until it starts (or is cancelled)."""
    global _waiting
    started = threading.Event()

    def go() -> T:
        _leave_queue(started)
        return fn(*args, **kwargs)

    pool = _pool()
    with _waiting_lock:
        _waiting += 1
    future = pool.submit(go)
    future.add_done_callback(lambda f: _leave_queue(started))  # cancelled before it started
    return future


def _leave_queue(started: threading.Event) -> None:
    global _waiting
    with _waiting_lock:
        if not started.is_set():
            started.set()
            _waiting -= 1


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the compute thread; blocks until it returns (inline when the
    caller already is that thread)."""
    if on_compute_thread():
        return fn(*args, **kwargs)
    return _submit(fn, *args, **kwargs).result()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``await`` ``fn(*args, **kwargs)`` run on the compute thread (the event loop stays free)."""
    if on_compute_thread():  # an event loop running on the compute thread itself
        return fn(*args, **kwargs)
    return await asyncio.wrap_future(_submit(fn, *args, **kwargs))
