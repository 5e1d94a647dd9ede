"""The real LFM2 architecture loads through the same wrapper (tiny random weights, SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest
import torch
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared.devices import Placement, resolve_placement
from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec


class Tag(BaseModel):
    label: str = Field(max_length=10)
    score: int


def test_tiny_lfm2_loads_and_generates(tiny_lfm2_dir):
    registry = ModelRegistry(budget_bytes=2**31)
    backend = registry.get(ModelSpec(model=str(tiny_lfm2_dir), max_new_tokens=8))
    assert type(backend.model).__name__ == "Lfm2ForCausalLM"
    assert backend.placement.dtype == (torch.float32 if not torch.cuda.is_available() else backend.placement.dtype)


async def test_tiny_lfm2_structured_output_through_agent(tiny_lfm2_dir):
    # random weights produce noise, but the grammar still forces valid JSON for the schema
    model = LiquidModel(ModelSpec(model=str(tiny_lfm2_dir), max_new_tokens=16), registry=ModelRegistry(2**31))
    result = await Agent(model, output_type=Tag).run("Tag this.")
    assert isinstance(result.output, Tag) and len(result.output.label) <= 10


def test_cuda_placement_is_explicit_never_auto():
    placement = Placement(device=torch.device("cuda:0"), dtype=torch.bfloat16)
    assert placement.device_map == {"": "cuda:0"}
    assert placement.load_kwargs() == {"dtype": torch.bfloat16, "device_map": {"": "cuda:0"}}
    cpu = Placement(device=torch.device("cpu"), dtype=torch.float32)
    assert cpu.device_map is None and "device_map" not in cpu.load_kwargs()


def test_cpu_defaults_to_fp32_and_dtype_override():
    assert resolve_placement("cpu").dtype == torch.float32
    assert resolve_placement("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_placement("cpu", "fp8")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lfm2_on_cuda_uses_cuda0_and_bf16(tiny_lfm2_dir):
    registry = ModelRegistry(budget_bytes=2**31)
    backend = registry.get(ModelSpec(model=str(tiny_lfm2_dir), max_new_tokens=8))
    assert next(backend.model.parameters()).device == torch.device("cuda:0")
    assert backend.placement.device_map == {"": "cuda:0"}
    assert backend.placement.dtype in (torch.bfloat16, torch.float16)
    before = torch.cuda.memory_allocated()
    registry.cleanup()
    assert torch.cuda.memory_allocated() < before


def test_cuda_requested_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_placement("cuda")


class Loose(BaseModel):
    """No bounds at all: the grammar layer must bound it, or random weights never stop."""

    name: str
    tags: list[str]
    count: int
    ratio: float
    nested: list[Tag]
    flag: bool


@pytest.mark.slow
async def test_random_weights_always_give_valid_json_for_unbounded_schema(tiny_lfm2_dir):
    import asyncio

    model = LiquidModel(ModelSpec(model=str(tiny_lfm2_dir), default_max_string_chars=24, default_max_items=3),
                        registry=ModelRegistry(2**31))
    agent = Agent(model, output_type=Loose)
    results = await asyncio.gather(*(agent.run(f"Fill in record {i}.") for i in range(8)))
    assert all(isinstance(r.output, Loose) for r in results)
    assert all(len(r.output.tags) <= 3 and len(r.output.name) <= 24 for r in results)


def test_tighten_schema_bounds_everything_and_budget_covers_it():
    from liquid_shared.models.grammar import estimate_max_tokens, tighten_schema

    schema = tighten_schema(Loose.model_json_schema(), max_string_chars=50, max_items=4)
    props = schema["properties"]
    assert props["name"]["maxLength"] == 50
    assert props["tags"]["maxItems"] == 4 and props["tags"]["items"]["maxLength"] == 50
    assert props["count"]["maximum"] == 10**15 and props["ratio"]["minimum"] == -(10**15)
    assert schema["$defs"]["Tag"]["properties"]["label"]["maxLength"] == 10  # own bound kept
    assert estimate_max_tokens(schema) > estimate_max_tokens(tighten_schema(Tag.model_json_schema(), 50, 4))


def test_liquid_dtype_setting_applies_to_specs_without_a_dtype(monkeypatch, tiny_lfm2_dir):
    from liquid_shared.config import get_settings
    from liquid_shared.models.loading import placement_for

    monkeypatch.setenv("LIQUID_DTYPE", "bf16")
    get_settings.cache_clear()
    try:
        assert placement_for(ModelSpec(model="x", device="cpu")).dtype == torch.bfloat16
        assert placement_for(ModelSpec(model="x", device="cpu", dtype="fp32")).dtype == torch.float32  # spec wins
        backend = ModelRegistry(budget_bytes=2**31).get(ModelSpec(model=str(tiny_lfm2_dir), device="cpu", max_new_tokens=6))
        assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
        from liquid_shared.models.backend import GenRequest

        req = GenRequest(messages=[{"role": "user", "content": "Hello"}], max_new_tokens=6, temperature=0.0)
        prompt = backend.render(req.messages)
        (result,) = backend.generate_batch([req], [prompt])
        assert result.output_tokens <= 6 and result.input_tokens == len(prompt)
    finally:
        monkeypatch.delenv("LIQUID_DTYPE")
        get_settings.cache_clear()
