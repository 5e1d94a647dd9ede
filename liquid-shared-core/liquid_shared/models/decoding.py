"""Our decode loop: a running batch that rows join and leave between steps (continuous batching).

Why not ``model.generate``: it decodes every row until the *longest* row of the batch ends, rows
that already emitted EOS keep costing a forward pass each step, and no new request can start
until the whole batch is done. Structured outputs are uneven (a QA list runs to ~150 tokens, a
category to ~10), so with ``generate`` most late steps compute rows that are finished while other
requests wait. Here:

* a finished row leaves the batch at once (its slice of the KV cache is dropped);
* a waiting request joins between two steps: it is prefilled on its own (with the other
  newcomers of similar length, left-padded), and its cache is merged into the running batch's
  (attention layers move into ``slot_cache.SlotLayer`` buffers at the first join, where a row is
  written into a free slot, right-aligned with the others, and a leaving row is replaced by the
  last one; LFM2's convolution states are per row and just stacked);
* each row stops at its own ``max_new_tokens``.

Semantics follow ``generate`` with the same settings, row by row (tested token for token against
``generate`` on each prompt alone, greedy, fp32): position ids count each row's real tokens, HF's
repetition penalty over the row's own tokens (prompt and output; pads are not tokens of the row),
then the row's grammar mask, then temperature, top-p and min-p, then argmax or a draw from the
row's *own* seeded generator (so a seeded sampled output does not depend on its batch-mates, and
requests with different seeds share one batch).

Only cache layer types on an allow-list can be merged: plain attention (``DynamicLayer``) and
LFM2-style convolution states (``LinearAttentionLayer``). For any other type (sliding window,
quantised, hybrid linear + full attention as in Falcon-H1 or Zamba) a stream admits rows only
while it is empty, i.e. it falls back to static batching.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.cache_utils import (
    DynamicLayer,
    LinearAttentionCacheLayerMixin,
    LinearAttentionLayer,
)

from liquid_shared.models.grammar import RowGrammars
from liquid_shared.models.prefix_cache import PrefixCache, row_of, stack
from liquid_shared.models.slot_cache import SlotLayer, compaction_order


@dataclass
class NewRow:
    key: Hashable  # the caller's handle for this row
    prompt: list[int]
    max_new_tokens: int
    grammar: Any = None  # an xgrammar CompiledGrammar, or None for free text
    seed: int | None = None  # this row's sampling seed (None: a random one)
    stop: Callable[[list[int]], bool] | None = None  # True once the row's tokens end in a stop sequence
    on_token: Callable[[int], None] | None = None  # called (in the decoding thread) with each new token
    prefix_len: int = 0  # the first tokens are likely shared with other requests: reuse / keep their cache


@dataclass
class Finished:
    key: Hashable
    tokens: list[int]  # new tokens, EOS excluded
    complete: bool  # True: EOS with its grammar (if any) complete; False: stopped by its token budget


@dataclass
class DecodeStats:
    """Counters and wall seconds of the decode loop (the profile of docs/benchmarks.md).

    Seconds are ``perf_counter`` spans around each phase: exact on a CPU; on CUDA kernels run
    asynchronously, so time moves to whichever phase next waits for the device (a ``.tolist()``).
    """

    prefills: int = 0  # prefill forward passes (one per admission of newcomers)
    prefill_rows: int = 0
    prefill_tokens: int = 0  # real prompt tokens prefilled
    prefill_padded_tokens: int = 0  # rows x width of the prefill passes (left padding included)
    steps: int = 0  # decode forward passes
    row_steps: int = 0  # sum over decode passes of the rows in the batch
    prefill_seconds: float = 0.0  # prefill forward passes
    merge_seconds: float = 0.0  # merging newcomers' caches into the running batch
    mask_seconds: float = 0.0  # grammar bitmasks (fill + apply)
    choose_seconds: float = 0.0  # penalty, warpers, argmax / draws (mask excluded)
    accept_seconds: float = 0.0  # per-row bookkeeping after a choice (grammar accept, stops, listeners)
    leave_seconds: float = 0.0  # dropping finished rows from the cache
    decode_seconds: float = 0.0  # decode forward passes

    def profile(self) -> dict[str, float]:
        """The counters plus derived figures: mean batch occupancy, share of time per phase."""
        out = {k: float(v) for k, v in self.__dict__.items()}
        phases = ("prefill_seconds", "merge_seconds", "mask_seconds", "choose_seconds", "accept_seconds",
                  "leave_seconds", "decode_seconds")
        total = sum(out[k] for k in phases)
        out["loop_seconds"] = total
        out["mean_batch"] = self.row_steps / self.steps if self.steps else 0.0
        out["padding_share"] = 1 - self.prefill_tokens / self.prefill_padded_tokens if self.prefill_padded_tokens else 0.0
        for k in phases:
            out[k.replace("_seconds", "_share")] = out[k] / total if total else 0.0
        return out


# Cache layer types whose rows ``_merge_into`` / ``_select_rows`` / ``_trim_left`` handle. Exact
# types, not isinstance: a subclass (sliding window, quantised, hybrid linear + full attention)
# keeps state these functions do not know, so its model batches statically.
MERGEABLE_LAYERS: frozenset[type] = frozenset({DynamicLayer, SlotLayer, LinearAttentionLayer})


def _mergeable(cache: Any) -> bool:
    layers = getattr(cache, "layers", None)
    return layers is not None and all(type(layer) in MERGEABLE_LAYERS for layer in layers)


def _to_slots(cache: Any, rows: int) -> None:
    """Move every plain attention layer of a running batch's cache into a ``SlotLayer`` with room
    for ``rows`` rows."""
    cache.layers = [SlotLayer.of(layer, spare_rows=max(0, rows - layer.keys.shape[0]))
                    if type(layer) is DynamicLayer and layer.keys is not None and layer.keys.numel() else layer
                    for layer in cache.layers]


def _select_rows(cache: Any, order: list[int], index: torch.Tensor) -> None:
    """Row ``j`` of every cache layer becomes old row ``order[j]`` (``index``: the same as a tensor)."""
    for layer in cache.layers:
        if type(layer) is SlotLayer:
            layer.keep_rows(order)
        elif isinstance(layer, LinearAttentionCacheLayerMixin):
            layer.reorder_cache(index)  # an index_select of the conv / recurrent states
        else:
            layer.batch_select_indices(index)


def _trim_left(cache: Any, columns: int) -> None:
    """Drop the first ``columns`` positions (padding of every row) from the attention layers."""
    for layer in cache.layers:
        if type(layer) is SlotLayer:
            layer.trim_left(columns)
        elif type(layer) is DynamicLayer and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[:, :, columns:, :]
            layer.values = layer.values[:, :, columns:, :]


def _merge_into(cache: Any, new: Any, old_len: int, new_len: int) -> None:
    """Append ``new``'s rows to ``cache``; attention layers are left-padded to a common length."""
    width = max(old_len, new_len)
    for layer, add in zip(cache.layers, new.layers, strict=True):
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            for i in range(layer.number_of_states):
                if layer.is_conv_states_initialized[i]:
                    layer.conv_states[i] = torch.cat([layer.conv_states[i], add.conv_states[i]], dim=0)
                if layer.is_recurrent_states_initialized[i]:
                    layer.recurrent_states[i] = torch.cat([layer.recurrent_states[i], add.recurrent_states[i]], dim=0)
            continue
        if type(layer) is SlotLayer:
            layer.append(add.keys, add.values)  # right-aligned; the window grows left for longer rows
            continue
        if layer.keys is None or not layer.keys.numel():
            continue
        keys, values = layer.keys, layer.values
        new_keys, new_values = add.keys, add.values
        if old_len < width:
            keys, values = (F.pad(t, (0, 0, width - old_len, 0)) for t in (keys, values))
        if new_len < width:
            new_keys, new_values = (F.pad(t, (0, 0, width - new_len, 0)) for t in (new_keys, new_values))
        layer.keys = torch.cat([keys, new_keys], dim=0)
        layer.values = torch.cat([values, new_values], dim=0)


PAD_TOLERANCE = 0.125  # a prefill pass takes rows at most this share (plus 8 tokens) shorter than its longest


def length_groups(rows: list[Any], lengths: list[int], *, exact: bool = False) -> list[list[Any]]:
    """``rows`` split into prefill passes of similar length, longest first. A left-padded pass
    computes every padding token like a real one, and on a CPU a pass of many rows costs about the
    sum of its rows' tokens, so padding is waste: a row joins a pass only when it is at most
    ``PAD_TOLERANCE`` of the pass's longest row (plus 8 tokens) shorter. ``exact``: only equal
    lengths share a pass (LFM2's convolutions must see a suffix right after its prefix)."""
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    groups: list[list[Any]] = []
    longest = -1
    for i in order:
        n = lengths[i]
        if groups and (n == longest if exact else longest - n <= PAD_TOLERANCE * longest + 8):
            groups[-1].append(rows[i])
        else:
            groups.append([rows[i]])
            longest = n
    return groups


class DecodeStream:
    """A running batch of rows that share sampling settings. Not thread-safe: one caller at a time.

    ``admit(rows)`` prefills newcomers and merges them in; ``step()`` picks one token for every
    row, returns the rows that finished (they leave) and runs the forward pass for the rest.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        pad_id: int,
        eos_ids: set[int],
        grammar_vocab_size: int | None = None,
        temperature: float = 0.0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        top_p: float = 1.0,
        stats: DecodeStats | None = None,
        prefix_cache: PrefixCache | None = None,
        slot_cache: bool = True,
        max_rows: int = 1,
    ):
        self.model = model
        self.slot_cache = slot_cache  # False: transformers' DynamicLayer caches (the benchmark's baseline)
        self.max_rows = max_rows  # rows the cache's buffers are sized for at first (more rows grow them)
        self.device = next(model.parameters()).device
        self.pad_id = pad_id
        self.eos_ids = set(eos_ids)
        self.temperature = temperature
        self.penalty = repetition_penalty
        self.warpers: list[Any] = []
        if temperature > 0:  # transformers' order: temperature, top-p, min-p
            self.warpers.append(TemperatureLogitsWarper(temperature))
            if top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(top_p))
            if min_p > 0:
                self.warpers.append(MinPLogitsWarper(min_p))
        self.grammars = RowGrammars(grammar_vocab_size or int(model.config.vocab_size))
        self.stats = stats if stats is not None else DecodeStats()  # the caller may share one across streams
        # the running batch, in batch order
        self.keys: list[Hashable] = []
        self.tokens: list[list[int]] = []
        self.budgets: list[int] = []
        self.generators: list[torch.Generator | None] = []  # per row, when sampling
        self.stops: list[Callable[[list[int]], bool] | None] = []
        self.listeners: list[Callable[[int], None] | None] = []
        self.cache: Any = None
        self.attention: torch.Tensor | None = None  # [rows, columns] 1 = a real token of the row
        self.positions: torch.Tensor | None = None  # [rows, 1] position of each row's next token
        self.presence: torch.Tensor | None = None  # [rows, vocab] tokens the row has seen (penalty)
        self.logits: torch.Tensor | None = None  # [rows, vocab] scores for each row's next token
        self.mergeable = True
        self.prefix_cache = prefix_cache  # shared by the model's streams; None: every prompt is prefilled whole

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> int:
        return len(self.keys)

    def can_admit(self) -> bool:
        """False when the running batch's cache cannot take new rows (static batching fallback)."""
        return self.active == 0 or self.mergeable

    def _forward(self, **kwargs: Any) -> Any:
        return self.model(use_cache=True, logits_to_keep=1, **kwargs)  # transformers 5.24: ``cache=``

    # -------------------------------------------------------------- admission
    @torch.inference_mode()
    def admit(self, rows: list[NewRow]) -> None:
        """Prefill ``rows`` and add them to the running batch. Without a prefix cache (or rows
        naming no prefix) the rows are prefilled together, left-padded. With one, each named
        prefix is taken from the cache or prefilled once (and stored), and only the rest of each
        prompt is prefilled, on top of a copy of its prefix's cache."""
        if not rows:
            return
        if not self.can_admit():
            raise RuntimeError("this stream's cache type cannot take rows while others decode")
        for r in rows:
            if not r.prompt:
                raise ValueError(f"row {r.key!r} has an empty prompt")
        if self.prefix_cache is None or (self.cache is not None and not self.mergeable):
            self._admit_prefilled(rows)
            return
        cached = [r for r in rows if 0 < r.prefix_len < len(r.prompt)]
        plain = [r for r in rows if not 0 < r.prefix_len < len(r.prompt)]
        if plain:
            self._admit_prefilled(plain)
        if cached:
            self._admit_on_prefixes(cached)

    def _prefill(self, prompts: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One left-padded forward pass over ``prompts``: (cache, attention, next positions, logits)."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p):] = 1
        ids, attention = ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        t0 = time.perf_counter()
        out = self._forward(input_ids=ids, attention_mask=attention, position_ids=positions)
        logits = out.logits[:, -1, :].float()
        self._count_prefill(time.perf_counter() - t0, sum(len(p) for p in prompts), len(prompts) * width)
        return out.cache, attention, positions[:, -1:] + 1, logits

    def _count_prefill(self, seconds: float, tokens: int, padded_tokens: int) -> None:
        self.stats.prefill_seconds += seconds
        self.stats.prefills += 1
        self.stats.prefill_tokens += tokens
        self.stats.prefill_padded_tokens += padded_tokens

    def _admit_prefilled(self, rows: list[NewRow]) -> None:
        for group in length_groups(rows, [len(r.prompt) for r in rows]):
            cache, attention, next_pos, logits = self._prefill([r.prompt for r in group])
            self.stats.prefill_rows += len(group)
            self._join(group, cache, attention, next_pos, logits)

    def _admit_on_prefixes(self, rows: list[NewRow]) -> None:
        pc = self.prefix_cache
        entries: dict[tuple[int, ...], Any] = {}
        missing: list[tuple[int, ...]] = []
        for r in rows:
            key = tuple(r.prompt[:r.prefix_len])
            if key in entries or key in missing:
                pc.count(True, len(key))  # prefilled once in this admission, for an earlier row
                continue
            entry = pc.lookup(key)
            pc.count(entry is not None, len(key))
            if entry is None:
                missing.append(key)
            else:
                entries[key] = entry
        if missing:  # the prefixes nobody holds yet: one pass, then one entry per prefix
            cache, _, _, _ = self._prefill([list(k) for k in missing])
            if not _mergeable(cache):  # a cache type we cannot slice: no prefix reuse for this model
                self.prefix_cache = None
                self._admit_prefilled(rows)
                return
            for i, key in enumerate(missing):
                entries[key] = row_of(cache, i, len(key))
                pc.put(key, entries[key])
        # convolution states must see each suffix right after its prefix: no padding in between,
        # so suffixes of unequal length go in separate passes (attention-only models: suffixes of
        # similar length share a pass)
        conv = any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in next(iter(entries.values())).layers)
        for group in length_groups(rows, [len(r.prompt) - r.prefix_len for r in rows], exact=conv):
            self._admit_suffixes(group, [entries[tuple(r.prompt[:r.prefix_len])] for r in group])

    def _admit_suffixes(self, rows: list[NewRow], entries: list[Any]) -> None:
        """Prefill each row's prompt after its prefix, on a stacked copy of the prefixes' caches."""
        lengths = [r.prefix_len for r in rows]
        suffixes = [r.prompt[r.prefix_len:] for r in rows]
        past_w, width = max(lengths), max(len(s) for s in suffixes)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), past_w + width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (n, s) in enumerate(zip(lengths, suffixes, strict=True)):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            attention[i, past_w - n:past_w] = 1
            attention[i, past_w + width - len(s):] = 1
            positions[i, width - len(s):] = torch.arange(n, n + len(s))
        ids, attention, positions = ids.to(self.device), attention.to(self.device), positions.to(self.device)
        t0 = time.perf_counter()
        past = stack(entries, lengths)
        self.stats.merge_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        out = self._forward(input_ids=ids, attention_mask=attention, position_ids=positions, cache=past)
        logits = out.logits[:, -1, :].float()
        self._count_prefill(time.perf_counter() - t1, sum(len(s) for s in suffixes), len(rows) * width)
        self.stats.prefill_rows += len(rows)
        self._join(rows, out.cache, attention, positions[:, -1:] + 1, logits)

    def _join(self, rows: list[NewRow], cache: Any, attention: torch.Tensor, next_pos: torch.Tensor,
              logits: torch.Tensor) -> None:
        """Add prefilled ``rows`` (their cache, attention columns, next positions, last logits)."""
        t1 = time.perf_counter()
        width = attention.shape[1]
        presence = None
        if self.penalty != 1.0:
            presence = torch.zeros((len(rows), logits.shape[-1]), dtype=torch.bool, device=self.device)
            for i, r in enumerate(rows):
                presence[i, torch.tensor(r.prompt, device=self.device)] = True
        if self.cache is None:
            self.cache, self.attention, self.positions, self.presence, self.logits = (
                cache, attention, next_pos, presence, logits)
            self.mergeable = _mergeable(cache)
        else:
            if self.slot_cache and not any(type(layer) is SlotLayer for layer in self.cache.layers):
                # slots from the first join on: a lone request (or a batch nobody joins) keeps the
                # plain cache, whose per-step concatenation is cheap at a few rows
                _to_slots(self.cache, self.max_rows)
            old_len = self.attention.shape[1]
            _merge_into(self.cache, cache, old_len, width)
            total = max(old_len, width)
            self.attention = torch.cat(
                [F.pad(self.attention, (total - old_len, 0)), F.pad(attention, (total - width, 0))], dim=0)
            self.positions = torch.cat([self.positions, next_pos], dim=0)
            if presence is not None:
                self.presence = torch.cat([self.presence, presence], dim=0)
            self.logits = torch.cat([self.logits, logits], dim=0)
        self.stats.merge_seconds += time.perf_counter() - t1
        for r in rows:
            self.keys.append(r.key)
            self.tokens.append([])
            self.budgets.append(r.max_new_tokens)
            self.generators.append(self._generator(r.seed))
            self.stops.append(r.stop)
            self.listeners.append(r.on_token)
            self.grammars.add(r.key, r.grammar)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if self.temperature <= 0:
            return None
        g = torch.Generator(device=self.device)
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        return g

    @torch.inference_mode()
    def drop(self, keys: set[Hashable]) -> None:
        """Remove rows whose callers went away (no result)."""
        keep = [i for i, k in enumerate(self.keys) if k not in keys]
        if len(keep) < self.active:
            for k in set(self.keys) & keys:
                self.grammars.discard(k)
            self._keep(keep)

    def _keep(self, keep: list[int]) -> list[int]:
        """Keep the rows ``keep`` (ascending); returns the new batch order (old row of each new row)."""
        if not keep:
            self.keys, self.tokens, self.budgets, self.generators, self.stops, self.listeners = [], [], [], [], [], []
            self.cache = self.attention = self.positions = self.presence = self.logits = None
            return []
        # rows that leave are filled by rows from the end of the batch (few cache rows move)
        order = compaction_order(keep)
        index = torch.tensor(order, device=self.device)
        _select_rows(self.cache, order, index)
        self.attention, self.positions, self.logits = self.attention[index], self.positions[index], self.logits[index]
        if self.presence is not None:
            self.presence = self.presence[index]
        self.keys = [self.keys[i] for i in order]
        self.tokens = [self.tokens[i] for i in order]
        self.budgets = [self.budgets[i] for i in order]
        self.generators = [self.generators[i] for i in order]
        self.stops = [self.stops[i] for i in order]
        self.listeners = [self.listeners[i] for i in order]
        # columns that are padding for every remaining row are dead weight in every later step
        first = int(self.attention.any(dim=0).nonzero()[0])
        if first > 0:
            self.attention = self.attention[:, first:]
            _trim_left(self.cache, first)
        return order

    # ------------------------------------------------------------------- step
    def _choose(self) -> torch.Tensor:
        scores = self.logits
        if self.presence is not None:
            penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
            scores = torch.where(self.presence, penalised, scores)
        t0 = time.perf_counter()
        scores = self.grammars.mask(scores, self.keys)
        self.stats.mask_seconds += time.perf_counter() - t0
        for warper in self.warpers:
            scores = warper(None, scores)
        if self.temperature > 0:
            probs = torch.softmax(scores, dim=-1)
            # one draw per row from the row's own generator: the same as ``generate`` on that row alone
            return torch.cat([torch.multinomial(probs[i:i + 1], num_samples=1, generator=g).squeeze(1)
                              for i, g in enumerate(self.generators)])
        return scores.argmax(dim=-1)

    @torch.inference_mode()
    def step(self) -> list[Finished]:
        """One token for every row; returns the rows that finished (they have left the batch)."""
        if not self.keys:
            return []
        t0 = time.perf_counter()
        mask_before = self.stats.mask_seconds
        chosen = self._choose()
        picked = chosen.tolist()
        t1 = time.perf_counter()
        self.stats.choose_seconds += (t1 - t0) - (self.stats.mask_seconds - mask_before)
        finished: list[Finished] = []
        keep: list[int] = []
        self.grammars.accept_all(self.keys, picked)
        for i, (key, token) in enumerate(zip(self.keys, picked, strict=True)):
            if token in self.eos_ids:
                finished.append(Finished(key, self.tokens[i], True))
                continue
            self.tokens[i].append(token)
            if self.listeners[i] is not None:
                self.listeners[i](token)
            stop = self.stops[i]
            if stop is not None and stop(self.tokens[i]):
                finished.append(Finished(key, self.tokens[i], True))
            elif len(self.tokens[i]) >= self.budgets[i]:
                finished.append(Finished(key, self.tokens[i], False))
            else:
                keep.append(i)
        for f in finished:
            f.complete = f.complete and self.grammars.terminated(f.key)
            self.grammars.discard(f.key)
        t2 = time.perf_counter()
        self.stats.accept_seconds += t2 - t1
        if len(keep) < self.active:
            order = self._keep(keep)
            chosen = chosen[order] if order else chosen[:0]
        t3 = time.perf_counter()
        self.stats.leave_seconds += t3 - t2
        if not self.keys:
            return finished
        if self.presence is not None:
            self.presence[torch.arange(len(keep), device=self.device), chosen] = True
        step_ids = chosen.unsqueeze(1)
        self.attention = torch.cat([self.attention, torch.ones_like(step_ids)], dim=1)
        out = self._forward(input_ids=step_ids, attention_mask=self.attention, position_ids=self.positions,
                            cache=self.cache)
        self.positions = self.positions + 1
        self.logits = out.logits[:, -1, :].float()
        self.stats.decode_seconds += time.perf_counter() - t3
        self.stats.steps += 1
        self.stats.row_steps += len(self.keys)
        return finished


def decode_all(stream: DecodeStream, rows: list[NewRow]) -> dict[Hashable, Finished]:
    """Admit ``rows`` together and decode until every one has finished (static batching)."""
    stream.admit(rows)
    done: dict[Hashable, Finished] = {}
    while stream.active:
        for f in stream.step():
            done[f.key] = f
    return done
