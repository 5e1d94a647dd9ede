"""int8 linear layers for CPU decoding (``dtype="int8"``): the single-request latency lever.

A decode step of a small model on a CPU streams every weight through memory once: 540 MB for
SmolLM2-135M in fp32. ``int8_linear_layers`` replaces each ``nn.Linear``, the output head
included, with PyTorch's dynamically quantised linear layer: per-output-channel int8 weights,
activations quantised to int8 on the fly for the matrix product (fbgemm / x86 kernels, VNNI where
the CPU has it); everything else (embeddings, norms, attention, LFM2's convolutions) stays fp32.
The head is included because it is the largest single read of a step: SmolLM2's 49,152 x 576
head in fp32 took half of an int8 decode step (torch profiler, docs/benchmarks.md), and keeping
it fp32 did not raise the agreement with fp32's greedy texts there (llama.cpp's GGUFs quantise
it too). The input embedding (tied to the head in SmolLM2) stays fp32: a lookup reads one row.

What it costs, measured in docs/benchmarks.md ("Single-request latency and int8 weights"):

* greedy outputs are not fp32's: the texts differ after a few tokens (agreement measured there);
* the activation scale is computed over the whole input of a layer, i.e. over every row of a
  batch, so a row's greedy output can depend on its batch-mates (as with llama.cpp's batches).
  fp32 stays the default and the only dtype under which the ETL promises identical records
  between one-at-a-time and batched runs.

Why PyTorch's eager dynamic quantisation and not torchao: on this project's CPUs torchao's eager
int8 paths (weight-only, dynamic activation) and ``torch._weight_int8pack_mm`` made a decode step
*slower* than fp32 (docs/benchmarks.md). ``torch.ao.quantization`` is deprecated upstream but
present in the torch this project pins; its warnings are silenced here and nowhere else.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch


def int8_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (fp32, on the CPU) with every ``nn.Linear`` quantised to int8 in place. Returns
    the model."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    first = next(model.parameters())
    if first.device.type != "cpu" or first.dtype != torch.float32:
        raise ValueError(f"int8 linear layers need an fp32 model on the CPU, not {first.dtype} on {first.device}")
    names = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear)}
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear layer to quantise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
    return model


def int8_layer_count(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if _is_int8_linear(m))


def int8_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the packed int8 weights (and their biases), which ``model.parameters()`` misses."""
    total = 0
    for module in model.modules():
        if _is_int8_linear(module):
            weight, bias = module._packed_params._weight_bias()
            total += weight.numel() * weight.element_size() + weight.q_per_channel_scales().numel() * 16  # + fp64 scales, int64 zeros
            if bias is not None:
                total += bias.numel() * bias.element_size()
    return total


def _is_int8_linear(module: Any) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    return isinstance(module, DynamicInt8Linear)
