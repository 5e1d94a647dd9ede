"""Micro-batching of query encoding for the HTTP service.

Concurrent ``/search`` requests each need one query vector. Encoding them one by one runs many
tiny forward passes that fight over the same cores; ``BatchingEncoder`` lets a single worker
thread collect the queries that arrive while it is busy (up to ``max_batch``) and encode them in
one ``encode`` call. Callers block only on their own result. It wraps any object with
``encode(texts) -> (n, dim) array`` and ``dim``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np


class BatchingEncoder:
    def __init__(self, encoder, *, max_batch: int = 64):
        self.encoder = encoder
        self.dim = encoder.dim
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[list[str], Future] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="query-encoder", daemon=True)
        self._worker.start()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        future: Future = Future()
        self._queue.put((texts, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < self.max_batch:  # take whatever else is already waiting
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
                size += len(nxt[0])
            self._encode_batch(batch)

    def _encode_batch(self, batch: list[tuple[list[str], Future]]) -> None:
        texts = [t for texts, _ in batch for t in texts]
        try:
            vectors = self.encoder.encode(texts)
        except Exception as exc:  # hand the error to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for texts_i, future in batch:
            future.set_result(vectors[start : start + len(texts_i)])
            start += len(texts_i)
