"""Micro-batching: concurrent requests to one model become batched ``generate`` calls.

Every caller awaits ``submit``; a worker task (one per model and event loop) waits a few
milliseconds for concurrent callers, then runs up to ``max_batch_size`` requests that share
sampling settings in one ``generate`` on a worker thread, so the event loop stays free. While a
batch runs, new requests queue up and form the next batch.

We chose this over pydantic-ai's ``BatchModelRequests`` capability: that path is built for
provider batch APIs (a submitted batch is *polled*, every 30 s by default, and the run's history
holds a suspended response), which adds polling latency to every request of an in-process model
whose batch finishes in seconds. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from liquid_shared.models.backend import GenRequest, GenResult, LocalLiquidModel


@dataclass
class _Pending:
    req: GenRequest
    prompt: list[int]
    truncated: bool
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, backend: LocalLiquidModel, max_batch_size: int, max_wait_s: float = 0.01):
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches run, for tests and reports

    async def submit(self, req: GenRequest) -> GenResult:
        ids = self.backend.render(req.messages)
        ids, truncated = self.backend.fit_context(ids, req.messages, req.max_new_tokens)  # may raise PromptTooLong
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(req, ids, truncated, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"liquid-batcher:{self.backend.spec.label}")
        return await fut

    def _take_batch(self) -> list[_Pending]:
        self._queue = [p for p in self._queue if not p.future.done()]  # drop cancelled callers
        if not self._queue:
            return []
        key = self._queue[0].req.sampling_key()
        batch, rest = [], []
        for p in self._queue:
            if len(batch) < self.max_batch_size and p.req.sampling_key() == key:
                batch.append(p)
            else:
                rest.append(p)
        self._queue = rest
        return batch

    async def _run(self) -> None:
        await asyncio.sleep(self.max_wait_s)  # let concurrent callers join the first batch
        while batch := self._take_batch():
            self.batches.append(len(batch))
            try:
                results = await asyncio.to_thread(
                    self.backend.generate_batch, [p.req for p in batch], [p.prompt for p in batch]
                )
            except Exception as exc:  # one failed generate fails its batch, not the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, r in zip(batch, results, strict=True):
                r.prompt_truncated = p.truncated
                if not p.future.done():
                    p.future.set_result(r)
