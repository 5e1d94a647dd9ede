"""Which linear layers get LoRA adapters, per architecture.

Names were read off the models themselves (``named_modules`` of transformers 5.24's
``LlamaForCausalLM`` and of a tiny random ``Lfm2ForCausalLM``):

* Llama-style (SmolLM2): attention ``q_proj k_proj v_proj o_proj``.
* LFM2: attention ``q_proj k_proj v_proj out_proj`` and the short-convolution blocks' input and
  output projections ``in_proj`` / ``out_proj`` (``out_proj`` names both; the depthwise ``conv``
  itself is left alone). Its MLP is ``w1 w2 w3``.

``"all-linear"`` (PEFT's own shorthand: every linear layer but the output head) and an explicit
list are accepted everywhere; an unknown architecture without an explicit list is an error that
names the module names it has, rather than a silent guess.
"""

from __future__ import annotations

from typing import Any

TARGETS_BY_MODEL_TYPE: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "lfm2": ["q_proj", "k_proj", "v_proj", "out_proj", "in_proj"],
}


def linear_module_names(model: Any) -> list[str]:
    """The distinct last names of the model's ``nn.Linear`` layers."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def lora_targets(model: Any, targets: str | list[str] | None = None) -> str | list[str]:
    """The ``target_modules`` for PEFT's ``LoraConfig``: ``targets`` if given, else the architecture's."""
    if targets == "all-linear":
        return targets
    names = linear_module_names(model)
    if targets:
        wanted = [targets] if isinstance(targets, str) else list(targets)
        missing = [t for t in wanted if t not in names]
        if missing:
            raise ValueError(f"LoRA target module(s) {missing} are not linear layers of this model; "
                             f"it has {names}")
        return wanted
    model_type = model.config.model_type
    if model_type not in TARGETS_BY_MODEL_TYPE:
        raise ValueError(f"no default LoRA targets for model type {model_type!r}; pass targets explicitly "
                         f"(its linear layers: {names}) or 'all-linear'")
    return [t for t in TARGETS_BY_MODEL_TYPE[model_type] if t in names]
