"""Continuous micro-batching: concurrent requests to one model share one running decode batch.

Every caller awaits ``submit``; a worker task (one per model and event loop) waits a few
milliseconds for concurrent callers, then keeps a ``DecodeStream`` running on a worker thread (the
event loop stays free). Between decode steps, finished rows return to their callers and waiting
requests take the free slots (up to ``max_batch_size`` rows), so the batch stays full while work
is queued instead of draining to its longest row.

A stream holds requests with equal sampling settings. When the oldest waiting request has other
settings, the stream stops admitting, drains, and the next stream starts with that request, so no
setting waits forever behind a busy one.

We chose this over pydantic-ai's ``BatchModelRequests`` capability: that path is built for
provider batch APIs (a submitted batch is *polled*, every 30 s by default, and the run's history
holds a suspended response), which adds polling latency to every request of an in-process model
whose rows finish in seconds. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from dataclasses import dataclass

from liquid_shared.models.backend import GenRequest, GenResult, LocalLiquidModel
from liquid_shared.models.decoding import DecodeStream

_ids = itertools.count()


@dataclass(eq=False)
class _Pending:
    req: GenRequest
    prompt: list[int]
    truncated: bool
    future: asyncio.Future
    key: tuple
    row: int


class MicroBatcher:
    def __init__(self, backend: LocalLiquidModel, max_batch_size: int, max_wait_s: float = 0.01):
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # requests admitted together (one prefill each), for tests and reports
        self.peak_rows = 0  # most rows decoding at once

    async def submit(self, req: GenRequest) -> GenResult:
        ids = self.backend.render(req.messages)
        ids, truncated = self.backend.fit_context(ids, req.messages, req.max_new_tokens)  # may raise PromptTooLong
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(req, ids, truncated, fut, req.sampling_key(), next(_ids)))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"liquid-batcher:{self.backend.spec.label}")
        return await fut

    def _take(self, key: tuple, free: int) -> list[_Pending]:
        """Up to ``free`` waiting requests with sampling ``key``, oldest first; none when an older
        request with other settings waits (the stream drains for it)."""
        taken, rest = [], []
        for p in self._queue:
            if len(taken) < free and p.key == key:
                taken.append(p)
            elif p.key != key and not taken:
                return []
            else:
                rest.append(p)
        self._queue = rest
        return taken

    def _should_yield(self, key: tuple, stream: DecodeStream, rows: dict[int, _Pending]) -> bool:
        """Called from the worker thread between steps: should it return to the event loop, to
        admit waiting requests into free slots or to drop rows whose callers went away?"""
        if any(p.future.done() for p in list(rows.values())):
            return True
        return stream.active < self.max_batch_size and any(p.key == key for p in self._queue[:64])

    async def _run(self) -> None:
        await asyncio.sleep(self.max_wait_s)  # let concurrent callers join the first batch
        stream = None
        rows: dict[int, _Pending] = {}
        while True:
            self._queue = [p for p in self._queue if not p.future.done()]  # drop cancelled callers
            if not rows:
                if not self._queue:
                    return
                stream = self.backend.open_stream(self._queue[0].req)
                key = self._queue[0].key
            newcomers = self._take(key, self.max_batch_size - len(rows)) if stream.can_admit() else []
            if newcomers:
                self.batches.append(len(newcomers))
                rows.update((p.row, p) for p in newcomers)
                self.peak_rows = max(self.peak_rows, len(rows))
            gone = {r for r, p in rows.items() if p.future.done()}
            try:
                finished = await asyncio.to_thread(
                    self.backend.advance,
                    stream,
                    [(p.row, p.req, p.prompt) for p in newcomers],
                    gone,
                    functools.partial(self._should_yield, key, stream, rows),
                )
            except Exception as exc:  # a failed step fails the rows in that batch, not the worker
                for p in rows.values():
                    if not p.future.done():
                        p.future.set_exception(exc)
                rows.clear()
                continue
            for r in gone:
                rows.pop(r, None)
            for f in finished:
                p = rows.pop(f.key)
                if not p.future.done():
                    result = self.backend.result(f, p.req, p.prompt)
                    result.prompt_truncated = p.truncated
                    p.future.set_result(result)
