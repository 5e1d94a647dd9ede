"""Bad input to the model layer: clear errors that name the input and say how to fix it."""

from __future__ import annotations

import pytest
from pydantic_ai import Agent

from liquid_shared.models import (
    LiquidModel,
    ModelLoadError,
    ModelRegistry,
    ModelSpec,
    PromptTooLong,
)
from liquid_shared.models.backend import GenRequest


def test_unknown_hub_id_offline_fails_fast_with_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing is there
    registry = ModelRegistry(budget_bytes=2**30)
    with pytest.raises(ModelLoadError) as info:
        registry.get(ModelSpec(model="LiquidAI/LFM2-1.2B"))
    msg = str(info.value)
    assert "LiquidAI/LFM2-1.2B" in msg and "hf download" in msg and "LIQUID_OFFLINE" in msg


def test_missing_local_path_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelRegistry(budget_bytes=2**30).get(ModelSpec(model=str(missing)))


def test_folder_without_config_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        ModelRegistry(budget_bytes=2**30).get(ModelSpec(model=str(tmp_path)))


def test_unknown_offline_alias():
    with pytest.raises(ModelLoadError, match="unknown offline model alias"):
        ModelRegistry(budget_bytes=2**30).get(ModelSpec(model="offline:gpt-5"))


async def test_prompt_too_long_error_policy(tiny_lfm2_dir):
    spec = ModelSpec(model=str(tiny_lfm2_dir), context_window=256, max_new_tokens=16, context_overflow="error")
    agent = Agent(LiquidModel(spec, registry=ModelRegistry(2**31)))
    with pytest.raises(PromptTooLong, match=r"exceeds the 256-token context"):
        await agent.run("word " * 1000)


async def test_prompt_too_long_truncate_policy_keeps_system_and_tail(tiny_lfm2_dir):
    spec = ModelSpec(model=str(tiny_lfm2_dir), context_window=256, max_new_tokens=16, context_overflow="truncate")
    registry = ModelRegistry(2**31)
    backend = registry.get(spec)
    messages = [{"role": "system", "content": "SYSTEM RULES"}, {"role": "user", "content": "word " * 1000 + "LAST"}]
    ids, truncated = backend.fit_context(backend.render(messages), messages, 16)
    assert truncated and len(ids) == 256 - 16
    text = backend.tokenizer.decode(ids)
    assert "SYSTEM RULES" in text and "LAST" in text
    result = await registry.generate(spec, GenRequest(messages=messages, max_new_tokens=16))
    assert result.prompt_truncated and result.input_tokens == 240
    agent = Agent(LiquidModel(spec, registry=registry))
    assert isinstance((await agent.run("word " * 1000)).output, str)


def test_no_run_sync_in_library_code():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("liquid-shared-core", "liquid-etl-pipeline", "liquid-rag-runtime", "liquid-lvm", "experiments")
        for p in (root / pkg).rglob("*.py")
        if "run_sync(" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
