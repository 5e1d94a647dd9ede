"""ModelRegistry with real (tiny, random-weight) models: sharing, budget, LRU unload, cleanup."""

from __future__ import annotations

import asyncio
import gc
import weakref

import psutil
import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec, OverBudgetError


class Word(BaseModel):
    word: str = Field(max_length=12)


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _specs(dirs) -> tuple[ModelSpec, ModelSpec]:
    a, b = dirs
    return ModelSpec(model=str(a), max_new_tokens=12), ModelSpec(model=str(b), max_new_tokens=12)


@pytest.mark.slow
async def test_several_agents_over_two_specs_load_exactly_two_models(tiny_llama_dirs):
    spec_a, spec_b = _specs(tiny_llama_dirs)
    registry = ModelRegistry(budget_bytes=2 * 2**30)
    agents = [Agent(LiquidModel(spec, registry=registry), output_type=Word) for spec in (spec_a, spec_b) * 3]
    results = await asyncio.gather(*(agent.run(f"Say a word ({i}).") for i, agent in enumerate(agents)))
    assert all(isinstance(r.output, Word) for r in results)
    assert registry.load_counts == {spec_a: 1, spec_b: 1}
    assert sorted(s.model for s in registry.loaded_specs()) == sorted([spec_a.model, spec_b.model])


def test_budget_unloads_lru_before_loading_and_returns_memory(tiny_llama_dirs):
    spec_a, spec_b = _specs(tiny_llama_dirs)
    probe = ModelRegistry(budget_bytes=2**32)
    size_a = probe.get(spec_a).weight_bytes
    size_b = probe.get(spec_b).weight_bytes
    probe.cleanup()
    del probe
    assert size_a > 50 * 2**20 and size_b > 50 * 2**20

    registry = ModelRegistry(budget_bytes=int(max(size_a, size_b) * 1.3))  # fits one, not both
    model_a = weakref.ref(registry.get(spec_a).model)
    rss_with_a = _rss()
    model_b = weakref.ref(registry.get(spec_b).model)
    rss_with_b = _rss()
    assert model_a() is None, "the unloaded model is still referenced somewhere"
    assert registry.events == [("load", spec_a.model), ("unload", spec_a.model), ("load", spec_b.model)]
    assert not registry.is_loaded(spec_a) and registry.is_loaded(spec_b)
    assert registry.loaded_bytes == size_b <= registry.budget_bytes
    # A's memory was returned: holding B costs about B, not A + B
    assert rss_with_b - rss_with_a < size_b - 0.5 * size_a

    before = _rss()
    registry.cleanup()
    after = _rss()
    assert registry.loaded_specs() == [] and registry.loaded_bytes == 0
    assert model_b() is None, "cleanup left a reference to the weights"
    # the allocator keeps some freed pages, but a large share goes back to the OS at once
    assert before - after > 0.3 * size_b, f"cleanup returned only {(before - after) / 2**20:.0f} MiB"


def test_budget_smaller_than_one_model_is_a_clear_error(tiny_llama_dirs):
    spec_a, _ = _specs(tiny_llama_dirs)
    registry = ModelRegistry(budget_bytes=10 * 2**20)
    with pytest.raises(OverBudgetError, match=r"needs about .* budget is 0\.01 GiB"):
        registry.get(spec_a)
    assert registry.loaded_specs() == []


def test_model_in_use_is_not_unloaded(tiny_llama_dirs):
    spec_a, spec_b = _specs(tiny_llama_dirs)
    probe = ModelRegistry(budget_bytes=2**32)
    size = max(probe.get(spec_a).weight_bytes, probe.get(spec_b).weight_bytes)
    probe.cleanup()
    registry = ModelRegistry(budget_bytes=int(size * 1.3))
    registry.acquire(spec_a)  # held, as during a generate
    with pytest.raises(OverBudgetError, match="in use"):
        registry.get(spec_b)
    registry.release(spec_a)
    registry.get(spec_b)
    assert registry.loaded_specs() == [spec_b]


async def test_concurrent_first_callers_share_one_load(tiny_llama_dirs):
    spec_a, _ = _specs(tiny_llama_dirs)
    registry = ModelRegistry(budget_bytes=2**32)
    backends = await asyncio.gather(*(asyncio.to_thread(registry.get, spec_a) for _ in range(6)))
    assert len({id(b) for b in backends}) == 1
    assert registry.load_counts[spec_a] == 1
