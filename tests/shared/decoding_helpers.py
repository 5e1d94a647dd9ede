"""What the decoding tests compare against: ``generate`` on one prompt alone (this folder is put on
sys.path by its conftest)."""

from __future__ import annotations

import torch


def chat_ids(tok, text: str) -> list[int]:
    """``text`` as one user turn of the tokenizer's chat template, with the generation prompt."""
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def generate_alone(model, tok, prompt: list[int], budget: int) -> list[int]:
    """``generate`` on one prompt, greedy, HF's repetition penalty; EOS and after removed."""
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget, do_sample=False,
                         repetition_penalty=1.05, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         temperature=None, top_k=None, top_p=None)
    row = out[0, len(prompt):].tolist()
    return row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
