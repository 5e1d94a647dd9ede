"""Continuous micro-batching: concurrent requests to one model share one running decode batch.

Every caller awaits ``submit``; a worker task (one per model and event loop) waits a few
milliseconds for concurrent callers, then keeps a ``DecodeStream`` running on a worker thread (the
event loop stays free). Between decode steps, finished rows return to their callers and waiting
requests take the free slots (up to ``max_batch_size`` rows), so the batch stays full while work
is queued instead of draining to its longest row.

Failures stay with the rows they concern: a schema that does not compile fails its own caller in
``submit`` (before it joins a batch); a decode step that raises fails the rows of that batch with a
``GenerationError`` naming the model, and the worker goes on with the queue; if the worker itself
stops, every caller still waiting gets the error. No caller is ever left awaiting forever.

A stream holds requests with equal sampling settings (seeds may differ: each row has its own). When the oldest waiting request has other
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

from liquid_shared import compute_thread
from liquid_shared.models.backend import GenRequest, GenResult, LocalLiquidModel
from liquid_shared.models.decoding import DecodeStream
from liquid_shared.models.errors import GenerationError, ModelUnloaded

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
        self._rows: dict[int, _Pending] = {}  # rows of the running stream
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # requests admitted together (one prefill each), for tests and reports
        self.peak_rows = 0  # most rows decoding at once

    @property
    def live_rows(self) -> int:
        """Requests queued or decoding (a row whose caller left counts until the worker drops it)."""
        return len(self._queue) + len(self._rows)

    async def submit(self, req: GenRequest) -> GenResult:
        ids = self.backend.render(req.messages, tools=req.tools)
        ids, truncated = self.backend.fit_context(ids, req.messages, req.max_new_tokens, req.tools)  # may raise PromptTooLong
        if (req.json_schema is not None or req.ebnf is not None) and req.grammar is None:
            await asyncio.to_thread(self.backend.compile, req)  # may raise GenerationError, for this caller only
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
        if compute_thread.waiting():  # other torch work (another model, an embedding batch) waits its turn
            return True
        return stream.active < self.max_batch_size and any(p.key == key for p in self._queue[:64])

    async def _run(self) -> None:
        try:
            await self._serve()
        except BaseException as exc:  # the worker stopped: nobody waiting may be stranded
            waiting = [p for p in [*self._rows.values(), *self._queue] if not p.future.done()]
            self._rows.clear()
            self._queue.clear()
            for p in waiting:
                if isinstance(exc, Exception):
                    p.future.set_exception(exc)
                else:
                    p.future.cancel()
            if not isinstance(exc, Exception):
                raise

    def _fail(self, pending: list[_Pending], exc: Exception) -> None:
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exc)

    async def _serve(self) -> None:
        await asyncio.sleep(self.max_wait_s)  # let concurrent callers join the first batch
        stream = None
        rows = self._rows
        while True:
            self._queue = [p for p in self._queue if not p.future.done()]  # drop cancelled callers
            if not rows:
                if not self._queue:
                    return
                try:
                    stream = self.backend.open_stream(self._queue[0].req, max_rows=self.max_batch_size)
                except ModelUnloaded as exc:
                    self._fail(self._queue, exc)
                    self._queue.clear()
                    return
                key = self._queue[0].key
            newcomers = self._take(key, self.max_batch_size - len(rows)) if stream.can_admit() else []
            if newcomers:
                self.batches.append(len(newcomers))
                rows.update((p.row, p) for p in newcomers)
                self.peak_rows = max(self.peak_rows, len(rows))
            gone = {r for r, p in rows.items() if p.future.done()}
            try:
                finished = await compute_thread.call(
                    self.backend.advance,
                    stream,
                    [(p.row, p.req, p.prompt) for p in newcomers],
                    gone,
                    functools.partial(self._should_yield, key, stream, rows),
                )
            except Exception as exc:  # a failed step fails the rows of this batch, not the worker
                if not isinstance(exc, ModelUnloaded | GenerationError):
                    exc = GenerationError(
                        f"model {self.backend.spec.model!r}: a decode step failed for a batch of {len(rows)} "
                        f"row(s): {type(exc).__name__}: {exc}"
                    ).with_traceback(exc.__traceback__)
                self._fail(list(rows.values()), exc)
                rows.clear()
                if isinstance(exc, ModelUnloaded):
                    self._fail(self._queue, exc)
                    self._queue.clear()
                continue
            for r in gone:
                rows.pop(r, None)
            for f in finished:
                p = rows.pop(f.key)
                if p.future.done():
                    continue
                try:
                    result = self.backend.result(f, p.req, p.prompt)
                except Exception as exc:  # pragma: no cover - decoding a finished row's tokens
                    p.future.set_exception(GenerationError(f"model {self.backend.spec.model!r}: {exc}"))
                    continue
                result.prompt_truncated = p.truncated
                p.future.set_result(result)
