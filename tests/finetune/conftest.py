"""Tiny random models (real Llama and LFM2 architectures, SmolLM2's tokenizer) and a tiny chat set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _tiny(folder: Path, config_cls, **shape) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from liquid_shared.offline import ensure_smollm2

    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    config = config_cls(vocab_size=len(tok), max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
                        **shape)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from transformers import LlamaConfig

    return _tiny(tmp_path_factory.mktemp("ft-llama"), LlamaConfig, hidden_size=32, intermediate_size=64,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="session")
def tiny_llama_other(tmp_path_factory) -> Path:
    """Same architecture, other shapes: an adapter of ``tiny_llama`` must not load on it."""
    from transformers import LlamaConfig

    return _tiny(tmp_path_factory.mktemp("ft-llama-other"), LlamaConfig, hidden_size=48, intermediate_size=64,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="session")
def tiny_lfm2(tmp_path_factory) -> Path:
    from transformers import Lfm2Config

    return _tiny(tmp_path_factory.mktemp("ft-lfm2"), Lfm2Config, hidden_size=32, intermediate_size=64,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 layer_types=["conv", "full_attention"])


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer from the context. Be brief."},
                         {"role": "user", "content": f"Context:\nThe {question} box is {answer}.\n\nQuestion: "
                                                     f"What colour is the {question} box?"},
                         {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="session")
def tiny_chat_file(tmp_path_factory) -> Path:
    """16 short conversations with a learnable answer (copy the colour from the context)."""
    colours = ["red", "blue", "green", "black"]
    items = [chat(f"item {i}", colours[i % 4]) for i in range(16)]
    path = tmp_path_factory.mktemp("ft-data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path
