"""A shared-prefix cache for the decode loop: a prompt prefix is prefilled once, then reused.

Many requests start with the same tokens. In the ETL, every chunk's request to a stage begins
with that stage's system turn (instructions and output schema), which is about half of all
prefill tokens (docs/benchmarks.md, "ETL profile"). vLLM calls this automatic prefix caching and
SGLang RadixAttention. Ours is keyed on the exact token ids of a prefix the caller names
(``NewRow.prefix_len``: the backend names the rendered system turn), not on fixed-size blocks.
The reason is LFM2: its convolution layers keep a state that exists only at the end of a forward
pass, so a prefix's state must be computed by a pass that stops there. Block hashing would need
one pass per block. The caller knows where the shared part ends, so one pass suffices.

An entry holds one row's cache for its prefix: attention keys and values (``DynamicLayer``,
exactly the prefix's columns, no padding) and LFM2's convolution states (``LinearAttentionLayer``).
Entries are immutable: ``DecodeStream`` stacks copies of them into the cache it passes to the
suffix's forward pass, which the model then extends. Memory is bounded: least recently used
entries are evicted once the bytes held pass ``max_bytes``, and an entry larger than the bound
is not stored. The counters say how well it works (hits, prompt tokens saved, bytes held).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, LinearAttentionCacheLayerMixin


@dataclass
class PrefixCacheStats:
    lookups: int = 0  # rows that named a prefix
    hits: int = 0  # ... whose prefix was already held
    tokens_saved: int = 0  # prompt tokens not prefilled thanks to hits
    stored: int = 0  # entries added
    evicted: int = 0  # entries dropped to stay under the bound
    too_large: int = 0  # prefixes not stored because one alone exceeds the bound

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


def cache_bytes(cache: Any) -> int:
    """Bytes of the tensors a cache holds (attention keys/values, convolution and recurrent states)."""
    total = 0
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            for states in (layer.conv_states, layer.recurrent_states):
                total += sum(t.numel() * t.element_size() for t in states.values() if isinstance(t, torch.Tensor))
        elif type(layer) is DynamicLayer and layer.keys is not None:
            total += layer.keys.numel() * layer.keys.element_size() * 2
    return total


def _copy_states(new: Any, parts: list[Any], combine) -> None:
    """Give ``new`` (a shallow copy of a convolution layer) its own state dicts: each state is
    ``combine`` of that state across ``parts``; the flags are copied."""
    new.conv_states = {j: combine([p.conv_states[j] for p in parts]) if isinstance(t, torch.Tensor) else t
                       for j, t in parts[0].conv_states.items()}
    new.recurrent_states = {j: combine([p.recurrent_states[j] for p in parts]) if isinstance(t, torch.Tensor) else t
                            for j, t in parts[0].recurrent_states.items()}
    for name in ("is_conv_states_initialized", "is_recurrent_states_initialized", "has_previous_state",
                 "conv_kernel_size"):
        setattr(new, name, dict(getattr(parts[0], name)))


def row_of(cache: Any, row: int, length: int) -> Any:
    """A copy of ``cache`` holding only row ``row`` and, in attention layers, its last ``length``
    columns (the row's real tokens; left padding dropped)."""
    out = copy.copy(cache)
    out.layers = []
    for layer in cache.layers:
        new = copy.copy(layer)
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            _copy_states(new, [layer], lambda ts: ts[0][row:row + 1].clone())
        elif layer.keys is not None and layer.keys.numel():
            new.keys = layer.keys[row:row + 1, :, -length:, :].clone()
            new.values = layer.values[row:row + 1, :, -length:, :].clone()
        out.layers.append(new)
    return out


def stack(entries: list[Any], lengths: list[int]) -> Any:
    """One batched cache from single-row caches: attention columns left-padded to the longest
    prefix; convolution states stacked. The inputs are not modified."""
    width = max(lengths)
    out = copy.copy(entries[0])
    out.layers = []
    for i, layer in enumerate(entries[0].layers):
        new = copy.copy(layer)
        parts = [e.layers[i] for e in entries]
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            _copy_states(new, parts, torch.cat)
        elif layer.keys is not None and layer.keys.numel():
            pad = [width - n for n in lengths]
            new.keys = torch.cat([torch.nn.functional.pad(p.keys, (0, 0, k, 0)) for p, k in zip(parts, pad, strict=True)])
            new.values = torch.cat([torch.nn.functional.pad(p.values, (0, 0, k, 0))
                                    for p, k in zip(parts, pad, strict=True)])
        out.layers.append(new)
    return out


class PrefixCache:
    """Single-row caches of prompt prefixes, keyed on their token ids, least recently used evicted."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        if max_bytes <= 0:
            raise ValueError(f"prefix cache: max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes_held = 0
        self.stats = PrefixCacheStats()
        self._entries: OrderedDict[tuple[int, ...], tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prefix: tuple[int, ...]) -> Any | None:
        """The entry for ``prefix`` (now the most recently used), or None."""
        hit = self._entries.get(prefix)
        if hit is not None:
            self._entries.move_to_end(prefix)
        return None if hit is None else hit[0]

    def count(self, hit: bool, tokens: int) -> None:
        """Record one row's lookup: ``hit`` when its prefix was not prefilled for it."""
        self.stats.lookups += 1
        if hit:
            self.stats.hits += 1
            self.stats.tokens_saved += tokens

    def put(self, prefix: tuple[int, ...], entry: Any) -> None:
        size = cache_bytes(entry)
        if size > self.max_bytes:
            self.stats.too_large += 1
            return
        if prefix in self._entries:
            self.bytes_held -= self._entries.pop(prefix)[1]
        self._entries[prefix] = (entry, size)
        self.bytes_held += size
        self.stats.stored += 1
        while self.bytes_held > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes_held -= dropped
            self.stats.evicted += 1

    def clear(self) -> None:
        self._entries.clear()
        self.bytes_held = 0

    def report(self) -> dict[str, float]:
        s = self.stats
        return {"lookups": s.lookups, "hits": s.hits, "hit_rate": s.hit_rate, "tokens_saved": s.tokens_saved,
                "stored": s.stored, "evicted": s.evicted, "too_large": s.too_large, "entries": len(self),
                "bytes_held": self.bytes_held, "max_bytes": self.max_bytes}
