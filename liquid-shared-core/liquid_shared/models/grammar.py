"""JSON-schema-constrained decoding via xgrammar, for our decode loop (``decoding.DecodeStream``).

One compiler per tokenizer; compiled grammars are cached by the schema's canonical JSON.
``RowGrammars`` holds a *different grammar per batch row*, or none (free text), so requests from
unrelated agents share one batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable
from typing import Any

import torch
import xgrammar as xgr

from liquid_shared.models.copy_constraint import CopyGrammarCache, has_copy_constraint


class GrammarCache:
    def __init__(self, tokenizer: Any, vocab_size: int):
        self._info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(self._info)
        self._cache: dict[str, xgr.CompiledGrammar] = {}
        self._copy = CopyGrammarCache(self._info)  # per-passage span grammars (``copy_constraint``)
        self._lock = threading.Lock()
        self.vocab_size = vocab_size

    def for_schema(self, schema: dict[str, Any]) -> xgr.CompiledGrammar:
        if has_copy_constraint(schema):
            return self._copy.compile(schema)
        # Not sort_keys: property order is the order the model writes fields in.
        key = json.dumps(schema)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        # Compact JSON only: whitespace the model might emit forever is not in the grammar.
        compiled = self._compiler.compile_json_schema(key, any_whitespace=False, strict_mode=True)
        with self._lock:
            self._cache[key] = compiled
        return compiled


    def for_ebnf(self, ebnf: str) -> xgr.CompiledGrammar:
        """A grammar given as EBNF text (``tool_format_lfm2.call_grammar``), cached by its text."""
        key = "ebnf:" + ebnf
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        compiled = self._compiler.compile_grammar(ebnf)
        with self._lock:
            self._cache[key] = compiled
        return compiled


class RowGrammars:
    """One xgrammar matcher per row of a running batch (``None``: free text), addressed by the row's
    key, so rows can join and leave the batch while the others keep decoding.

    A step's grammar work is batched: ``mask`` fills every constrained row's bitmask in one call
    of xgrammar's ``BatchGrammarMatcher`` (its C++ threads, no Python loop over rows), and
    ``accept_all`` advances every matcher in one call. ``batched=False`` keeps the row-by-row
    calls (the baseline of ``bench/bench_grammar_masks.py``); both give the same masks.
    """

    def __init__(self, vocab_size: int, *, batched: bool = True):
        self.vocab_size = vocab_size
        self.matchers: dict[Hashable, xgr.GrammarMatcher | None] = {}
        self.bitmask = xgr.allocate_token_bitmask(16, vocab_size)
        self.batch = xgr.BatchGrammarMatcher() if batched else None

    def add(self, key: Hashable, grammar: xgr.CompiledGrammar | None) -> None:
        self.matchers[key] = xgr.GrammarMatcher(grammar) if grammar is not None else None

    def discard(self, key: Hashable) -> None:
        self.matchers.pop(key, None)

    def _live(self, keys: list[Hashable]) -> tuple[list[xgr.GrammarMatcher], list[int]]:
        """The matchers of ``keys`` that still constrain their row, and their lines in ``keys``."""
        matchers, lines = [], []
        for k, key in enumerate(keys):
            m = self.matchers.get(key)
            if m is not None and not m.is_terminated():
                matchers.append(m)
                lines.append(k)
        return matchers, lines

    def accept(self, key: Hashable, token: int) -> None:
        m = self.matchers.get(key)
        if m is not None and not m.is_terminated():
            m.accept_token(token)

    def accept_all(self, keys: list[Hashable], tokens: list[int]) -> None:
        """``accept(keys[k], tokens[k])`` for every line, in one batched call."""
        if self.batch is None:
            for key, token in zip(keys, tokens, strict=True):
                self.accept(key, token)
            return
        matchers, lines = self._live(keys)
        if matchers:
            xgr.BatchGrammarMatcher.batch_accept_token(matchers, [tokens[k] for k in lines])

    def terminated(self, key: Hashable) -> bool:
        m = self.matchers.get(key)
        return m is None or m.is_terminated()

    def fill(self, keys: list[Hashable]) -> list[int]:
        """Fill the bitmask lines of the constrained rows of ``keys``; returns those lines."""
        if len(keys) > self.bitmask.shape[0]:
            self.bitmask = xgr.allocate_token_bitmask(len(keys), self.vocab_size)
        matchers, lines = self._live(keys)
        if not matchers:
            return lines
        if self.batch is not None:
            self.batch.batch_fill_next_token_bitmask(matchers, self.bitmask, indices=lines)
        else:
            for m, k in zip(matchers, lines, strict=True):
                m.fill_next_token_bitmask(self.bitmask, k)
        return lines

    def mask(self, scores: torch.Tensor, keys: list[Hashable]) -> torch.Tensor:
        """Mask ``scores`` (line k belongs to row ``keys[k]``) to what each row's grammar allows."""
        return self.apply(scores, self.fill(keys))

    def apply(self, scores: torch.Tensor, lines: list[int]) -> torch.Tensor:
        """Set the scores of tokens the filled bitmask forbids on ``lines`` to -inf."""
        if lines:
            device = scores.device
            cpu_scores = scores if device.type in ("cpu", "cuda") else scores.to("cpu")
            xgr.apply_token_bitmask_inplace(cpu_scores, self.bitmask.to(cpu_scores.device), indices=lines)
            scores = cpu_scores.to(device)
        return scores


def tighten_schema(schema: Any, max_string_chars: int, max_items: int) -> Any:
    """Copy of ``schema`` where every unbounded string gets ``maxLength``, every unbounded array
    ``maxItems`` and every unbounded number a +-1e15 range. The grammar then guarantees the JSON closes within a computable token budget; the
    output still validates against the caller's (looser) schema."""
    if isinstance(schema, list):
        return [tighten_schema(s, max_string_chars, max_items) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: tighten_schema(v, max_string_chars, max_items) for k, v in schema.items()}
    if out.get("type") == "string" and not any(k in out for k in ("maxLength", "enum", "const", "format", "pattern")):
        out["maxLength"] = max_string_chars
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = max_items
    if out.get("type") in ("integer", "number"):
        # an unbounded number can grow digit by digit forever; xgrammar enforces ranges
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -_NUMBER_BOUND
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = _NUMBER_BOUND
    return out


_NUMBER_BOUND = 10**15


def _integer_chars(schema: dict[str, Any]) -> int:
    """Characters of the longest integer part the schema's bounds allow (sign included)."""
    bounds = [schema.get(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
    finite = [abs(int(b)) for b in bounds if isinstance(b, int | float) and abs(b) < 1e300]
    if len(finite) < 2:  # unbounded on a side: assume tighten_schema's bound
        finite.append(_NUMBER_BOUND)
    return len(str(max(finite))) + 1


def estimate_max_tokens(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> int:
    """Upper estimate of the tokens a JSON value under a *tightened* schema can take (assuming at
    least ~2 characters per token inside strings, which holds for BPE vocabularies in practice)."""
    root = root or schema
    if depth > 20:
        return 64
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return estimate_max_tokens(root.get("$defs", {}).get(ref.split("/")[-1], {}), root, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return max(estimate_max_tokens(s, root, depth + 1) for s in schema[key])
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) // 2 + 2
    if "const" in schema:
        return len(json.dumps(schema["const"])) // 2 + 2
    t = schema.get("type")
    if t == "string":
        return int(schema.get("maxLength", 256)) // 2 + 2
    if t == "integer":
        # tokenisers that split digits (SmolLM2, LFM2) spend a token per digit: the sign and every
        # digit the bounds allow (tighten_schema bounds them to +-1e15: 17 characters)
        return _integer_chars(schema) + 1
    if t == "number":
        return max(24, _integer_chars(schema) + 8)
    if t == "boolean":
        return 2
    if t == "null":
        return 2
    if t == "array":
        item = estimate_max_tokens(schema.get("items", {}), root, depth + 1)
        return int(schema.get("maxItems", 16)) * (item + 1) + 2
    if t == "object" or "properties" in schema:
        return 2 + sum(len(k) // 2 + 4 + estimate_max_tokens(v, root, depth + 1)
                       for k, v in schema.get("properties", {}).items())
    return 64
