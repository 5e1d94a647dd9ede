"""``liquid_shared.compute_thread``: every torch call of the model layer runs on one thread."""

from __future__ import annotations

import asyncio
import threading

from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared import compute_thread
from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec


def _ident() -> int:
    return threading.get_ident()


def test_run_and_call_use_one_thread_from_any_caller():
    seen = {compute_thread.run(_ident)}
    threads = [threading.Thread(target=lambda: seen.add(compute_thread.run(_ident))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen.add(asyncio.run(compute_thread.call(_ident)))
    assert len(seen) == 1 and threading.get_ident() not in seen
    # inline on the thread itself: no deadlock when compute work submits compute work
    assert compute_thread.run(lambda: compute_thread.run(_ident)) in seen


def test_waiting_counts_queued_calls_and_cancelled_ones_leave_the_count():
    release, running = threading.Event(), threading.Event()

    def block():
        running.set()
        release.wait(10)

    blocker = compute_thread._submit(block)
    assert running.wait(10)
    queued = [compute_thread._submit(_ident) for _ in range(3)]
    assert compute_thread.waiting() == 3  # the blocker runs, three wait
    assert queued[0].cancel()
    assert compute_thread.waiting() == 2
    release.set()
    blocker.result(10)
    for f in queued[1:]:
        f.result(10)
    assert compute_thread.waiting() == 0


class Word(BaseModel):
    word: str = Field(max_length=12)


async def test_loads_and_decode_steps_run_on_the_compute_thread(tiny_lfm2_dir):
    registry = ModelRegistry(budget_bytes=2**31)
    spec = ModelSpec(model=str(tiny_lfm2_dir), max_new_tokens=8)
    where: dict[str, set[bool]] = {"advance": set()}
    from liquid_shared.models.backend import LocalLiquidModel

    original_init, original_advance = LocalLiquidModel.__init__, LocalLiquidModel.advance

    def init(self, *a, **k):
        where["load"] = {compute_thread.on_compute_thread()}
        original_init(self, *a, **k)

    def advance(self, *a, **k):
        where["advance"].add(compute_thread.on_compute_thread())
        return original_advance(self, *a, **k)

    LocalLiquidModel.__init__, LocalLiquidModel.advance = init, advance
    try:
        agent = Agent(LiquidModel(spec, registry=registry), output_type=Word)
        results = await asyncio.gather(*(agent.run(f"One word for {t}.") for t in ("sea", "sky", "sand")))
    finally:
        LocalLiquidModel.__init__, LocalLiquidModel.advance = original_init, original_advance
    assert all(isinstance(r.output, Word) for r in results)
    assert where == {"load": {True}, "advance": {True}}


def test_a_forked_child_gets_its_own_compute_thread():
    import os

    parent = compute_thread.run(_ident)  # the parent's thread exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is gone; a call must still run (not hang)
        code = 1
        try:
            code = 0 if compute_thread.run(_ident) != threading.get_ident() else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    import select
    import signal

    ready, _, _ = select.select([read], [], [], 60)
    if not ready:  # the call hung in the child
        os.kill(pid, signal.SIGKILL)
    reply = os.read(read, 1) if ready else b"hang"
    os.waitpid(pid, 0)
    assert parent != threading.get_ident() and reply == bytes([0])
