"""Model names that just work: the bundled models under the names people type, offline switches."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from liquid_shared.models import ModelLoadError, ModelSpec
from liquid_shared.models.loading import resolve_source
from liquid_shared.offline import (
    MINILM_ID,
    SMOLLM2_ID,
    bundled_alias,
    minilm_path,
    smollm2_cache_dir,
)


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135M-instruct", SMOLLM2_ID])
def test_standard_llm_names_resolve_to_the_bundled_copy(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: only the bundled copy exists
    path, extra = resolve_source(ModelSpec(model=name))
    assert path == str(smollm2_cache_dir()) and extra == {}


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-minilm-l6-v2"])
def test_standard_embedding_names_resolve_to_the_bundled_copy(name):
    from liquid_lvm.encoder.model import resolve_base
    from liquid_shared.embeddings import _resolve_model_path

    assert bundled_alias(name) == MINILM_ID
    assert _resolve_model_path(name) == str(minilm_path()) == resolve_base(name)


def test_an_unknown_name_fails_at_once_naming_what_works(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        resolve_source(ModelSpec(model="someone/not-a-model"))
    message = str(info.value)
    assert "someone/not-a-model" in message and "hf download" in message
    assert SMOLLM2_ID in message and MINILM_ID in message


def test_importing_the_stack_turns_the_hub_libraries_offline():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LIQUID_OFFLINE")}
    code = ("import liquid_shared, huggingface_hub.constants as c, os; "
            "print(c.HF_HUB_OFFLINE, os.environ['TRANSFORMERS_OFFLINE'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1"]
    env["LIQUID_OFFLINE"] = "false"
    out = subprocess.run([sys.executable, "-c", "import liquid_shared, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
