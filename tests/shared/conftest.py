"""Tiny real models for the model-layer tests: random weights, real architectures, real tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # decoding_helpers


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from liquid_shared.offline import ensure_smollm2

    return ensure_smollm2()


def _save_tiny(folder: Path, config, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def _tiny_lfm2_config(tok):
    """A ~25 M-parameter random LFM2 (conv and attention layers) sized to ``tok``'s vocabulary."""
    from transformers import Lfm2Config

    return Lfm2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        layer_types=["conv", "full_attention", "conv", "full_attention"],
        pad_token_id=tok.pad_token_id or tok.eos_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )


@pytest.fixture(scope="session")
def tiny_lfm2_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A random ``Lfm2ForCausalLM`` (~25 M params) with SmolLM2's tokenizer: the real LFM2 load path."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    config = _tiny_lfm2_config(tok)
    return _save_tiny(tmp_path_factory.mktemp("tiny-lfm2"), config, smollm2_dir)


@pytest.fixture(scope="module", params=["smollm2", "tiny_lfm2"])
def causal_lm(request):
    """(name, fp32 model, tokenizer) for both architectures we ship for: Llama (SmolLM2) and LFM2."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = request.getfixturevalue("smollm2_dir" if request.param == "smollm2" else "tiny_lfm2_dir")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return request.param, model, tok


LFM2_TOOL_TOKENS = ["<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>", "<|tool_call_end|>",
                    "<|tool_response_start|>", "<|tool_response_end|>"]


def lfm2_chat_template(name: str = "lfm2_v2") -> str:
    """LFM2's own chat template, as shipped by the LiquidAI/LFM2 checkpoints; TRL carries copies
    (``lfm2.jinja``: the first release, ``lfm2_v2.jinja``: LFM2-1.2B's current one)."""
    trl = pytest.importorskip("trl", reason="the LFM2 chat templates come with the trl package")
    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_lfm2_tools_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A random ``Lfm2ForCausalLM`` whose tokenizer looks like LFM2's where tools are concerned: the
    real LFM2 chat template and LFM2's tool markers as single special tokens (on SmolLM2's
    vocabulary; no package ships LFM2's own tokenizer files)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.add_special_tokens({"additional_special_tokens": LFM2_TOOL_TOKENS})
    tok.chat_template = lfm2_chat_template()
    config = _tiny_lfm2_config(tok)
    folder = tmp_path_factory.mktemp("tiny-lfm2-tools")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dirs(tmp_path_factory, smollm2_dir) -> tuple[Path, Path]:
    """Two random Llama-architecture models of ~100 MB fp32 each (big enough to see in RSS)."""
    from transformers import AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    out = []
    for i, hidden in enumerate((256, 320)):
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
            eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=False,
        )
        out.append(_save_tiny(tmp_path_factory.mktemp(f"tiny-llama-{i}"), config, smollm2_dir))
    return out[0], out[1]


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's ``llama-server`` over the bundled SmolLM2 GGUF on a free loopback port, with 4
    ``--parallel`` slots and an API key (so the 401 path is real). Built by ``make install``; a
    missing binary FAILS the tests that need it, unless ``LIQUID_SKIP_LLAMA_SERVER=1`` asks to skip."""
    import os
    import tempfile

    from liquid_shared.models.llama_server import (
        LlamaServer,
        LlamaServerMissing,
        llama_server_binary,
    )
    from liquid_shared.offline import smollm2_gguf_path

    try:
        llama_server_binary()
    except LlamaServerMissing as exc:
        if os.environ.get("LIQUID_SKIP_LLAMA_SERVER") == "1":
            pytest.skip(f"LIQUID_SKIP_LLAMA_SERVER=1: {exc}")
        pytest.fail(str(exc) + " (or set LIQUID_SKIP_LLAMA_SERVER=1 to skip these tests)", pytrace=False)
    log = Path(tempfile.mkdtemp(prefix="llama-server-")) / "server.log"
    server = LlamaServer(smollm2_gguf_path(), parallel=4, api_key="test-key", log_path=log)
    server.start()
    os.environ["LIQUID_TEST_LLAMA_KEY"] = "test-key"
    try:
        yield server
    finally:
        server.stop()
        os.environ.pop("LIQUID_TEST_LLAMA_KEY", None)
