"""BatchingEncoder: concurrent callers get their own vectors; errors reach the caller."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rag_runtime.query_batching import BatchingEncoder


@pytest.fixture(scope="module")
def encoder(rag_index):
    return rag_index.dense.encoder


def test_concurrent_callers_get_the_vectors_of_their_own_queries(encoder):
    batching = BatchingEncoder(encoder, max_batch=8)
    try:
        queries = [f"question number {i} about {topic}" for i, topic in
                   enumerate(["galaxies", "bread", "bonds", "insulin", "football", "compilers"] * 5)]
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda q: batching.encode([q])[0], queries))
        np.testing.assert_allclose(np.stack(got), encoder.encode(queries), atol=1e-5)
        pair = batching.encode(queries[:2])
        assert pair.shape == (2, encoder.dim)
        assert batching.encode([]).shape == (0, encoder.dim)
    finally:
        batching.close()


def test_an_encoder_error_reaches_the_caller_and_the_worker_survives(encoder):
    batching = BatchingEncoder(encoder)
    try:
        with pytest.raises((TypeError, ValueError)):
            batching.encode([None])  # the real tokenizer refuses a non-string
        assert batching.encode(["still works"]).shape == (1, encoder.dim)
    finally:
        batching.close()
