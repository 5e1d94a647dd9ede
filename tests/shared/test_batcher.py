"""The continuous batcher over a real (tiny, random) LFM2: slots are refilled while others decode,
requests with other sampling settings are not starved, cancelled callers leave the batch, and a
greedy result does not depend on the rest of the queue."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from liquid_shared.models import ModelSpec
from liquid_shared.models.backend import GenRequest, LocalLiquidModel
from liquid_shared.models.batcher import MicroBatcher


def _req(i: int, budget: int, temperature: float = 0.0) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": f"Tell me about number {i}."}],
                      max_new_tokens=budget, temperature=temperature, min_p=0.1, repetition_penalty=1.05)


def _backend(folder) -> LocalLiquidModel:
    return LocalLiquidModel(ModelSpec(model=str(folder), dtype="fp32"))


@pytest.mark.slow
async def test_free_slots_are_refilled_and_results_match_decoding_alone(tiny_lfm2_dir):
    backend = _backend(tiny_lfm2_dir)
    reqs = [_req(i, budget) for i, budget in enumerate([3, 20, 5, 20, 4, 12, 6, 9, 2, 15])]
    batcher = MicroBatcher(backend, max_batch_size=4)
    results = await asyncio.gather(*(batcher.submit(r) for r in reqs))
    assert sum(batcher.batches) == len(reqs) and len(batcher.batches) > 1  # later rows joined mid-run
    assert batcher.peak_rows == 4
    for r, res in zip(reqs, results, strict=True):
        (alone,) = backend.generate_batch([r], [backend.render(r.messages)])
        assert res.text == alone.text and res.output_tokens == alone.output_tokens <= r.max_new_tokens


async def test_other_sampling_settings_wait_for_a_drain_not_forever(tiny_lfm2_dir):
    backend = _backend(tiny_lfm2_dir)
    batcher = MicroBatcher(backend, max_batch_size=2)
    order: list[str] = []

    async def call(name: str, req: GenRequest):
        await batcher.submit(req)
        order.append(name)

    greedy = [call(f"greedy{i}", _req(i, 6)) for i in range(6)]
    sampled = call("sampled", _req(99, 6, temperature=0.7))
    # the sampled request arrives third: it must run before the greedy requests queued after it
    await asyncio.gather(greedy[0], greedy[1], sampled, *greedy[2:])
    assert order.index("sampled") < order.index("greedy5")
    assert len(order) == 7


async def test_a_cancelled_caller_leaves_the_batch_and_the_others_finish(tiny_lfm2_dir):
    backend = _backend(tiny_lfm2_dir)
    batcher = MicroBatcher(backend, max_batch_size=4)
    long = asyncio.create_task(batcher.submit(_req(0, 200)))
    short = [asyncio.create_task(batcher.submit(_req(i, 8))) for i in range(1, 4)]
    results = await asyncio.gather(*short)
    long.cancel()  # the long row is now alone in the batch, with 190 tokens to go
    with contextlib.suppress(asyncio.CancelledError):
        await long
    assert all(r.output_tokens <= 8 for r in results)
    assert long.cancelled()
    # the worker ends once nothing is left (the cancelled row did not keep it decoding)
    for _ in range(100):
        if batcher._worker.done():
            break
        await asyncio.sleep(0.05)
    assert batcher._worker.done()
    assert backend.decode_steps < 100  # the 200-token row did not decode to its budget
