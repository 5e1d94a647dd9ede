"""The transformers backend: one loaded causal LM that generates for many prompts at once.

``render`` and ``fit_context`` turn chat messages into prompt token ids under the context-window
policy. Decoding runs on ``decoding.DecodeStream``, a running batch that requests join and leave
between steps: ``open_stream`` + ``advance`` serve the micro-batcher (continuous batching),
``generate_batch`` decodes a fixed set of requests. Each row may carry its own JSON schema
(xgrammar-constrained) or none (free text).

Sampling order matters with constraints: we mask to the grammar *first* and then apply
temperature and min-p, so min-p never keeps only tokens the grammar forbids (which would leave
an all ``-inf`` row and crash sampling).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from liquid_shared.models.decoding import DecodeStats, DecodeStream, Finished, NewRow, decode_all
from liquid_shared.models.errors import PromptTooLong
from liquid_shared.models.grammar import GrammarCache
from liquid_shared.models.loading import load_model_and_tokenizer, weight_bytes
from liquid_shared.models.spec import ModelSpec

_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")


@dataclass
class GenRequest:
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.3
    min_p: float = 0.15
    repetition_penalty: float = 1.05
    seed: int | None = 0

    def sampling_key(self) -> tuple:
        """Requests with equal keys can share one running batch (token budgets may differ)."""
        return (self.temperature, self.min_p, self.repetition_penalty, self.seed)


@dataclass
class GenResult:
    text: str
    input_tokens: int
    output_tokens: int
    complete: bool = True
    prompt_truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class LocalLiquidModel:
    """A loaded model + tokenizer + grammar cache. Thread-safe: one decode call at a time."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.model, self.tokenizer, self.placement = load_model_and_tokenizer(spec)
        self.weight_bytes = weight_bytes(self.model)
        cfg = self.model.config
        self.context_window = int(
            spec.context_window or getattr(cfg, "max_position_embeddings", None) or 4096
        )
        self.grammars = GrammarCache(self.tokenizer, vocab_size=int(cfg.vocab_size))
        self._lock = threading.Lock()
        self.stats = DecodeStats()  # totals over every stream of this model

    @property
    def calls(self) -> int:
        """Prefill passes (each admits one or more requests into a running batch)."""
        return self.stats.prefills

    @property
    def rows(self) -> int:
        """Requests decoded."""
        return self.stats.prefill_rows

    @property
    def decode_steps(self) -> int:
        return self.stats.steps

    @property
    def row_steps(self) -> int:
        """Rows computed over the decode steps (row_steps / decode_steps: batch occupancy)."""
        return self.stats.row_steps

    # ------------------------------------------------------------------ prompts
    def render(self, messages: list[dict[str, str]], generation_prompt: bool = True) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return list(ids)
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + ("assistant: " if generation_prompt else "")
        return tok(text)["input_ids"]

    def fit_context(self, ids: list[int], messages: list[dict[str, str]], max_new_tokens: int) -> tuple[list[int], bool]:
        """Apply the spec's overflow policy. Returns (ids, truncated)."""
        limit = self.context_window - max_new_tokens
        if limit <= 0:
            raise PromptTooLong(
                f"max_new_tokens={max_new_tokens} leaves no room in the {self.context_window}-token context "
                f"of {self.spec.model!r}; lower max_new_tokens"
            )
        if len(ids) <= limit:
            return ids, False
        if self.spec.context_overflow == "error":
            raise PromptTooLong(
                f"prompt of {len(ids)} tokens + max_new_tokens={max_new_tokens} exceeds the {self.context_window}-"
                f"token context of {self.spec.model!r}; shorten the input or use context_overflow='truncate'"
            )
        # Keep the head (system prompt and template preamble) and the newest tokens.
        system = [m for m in messages if m["role"] == "system"]
        head = min(len(self.render(system, generation_prompt=False)) if system else 0, limit // 2)
        return ids[:head] + ids[len(ids) - (limit - head):], True

    # --------------------------------------------------------------- generation
    def open_stream(self, req: GenRequest) -> DecodeStream:
        """A running batch for requests with ``req.sampling_key()`` (see ``decoding``)."""
        eos = self.tokenizer.eos_token_id
        return DecodeStream(
            self.model,
            pad_id=self.tokenizer.pad_token_id,
            eos_ids=set(eos) if isinstance(eos, list) else {eos},
            grammar_vocab_size=self.grammars.vocab_size,
            temperature=req.temperature,
            min_p=req.min_p,
            repetition_penalty=req.repetition_penalty,
            seed=req.seed,
            stats=self.stats,
        )

    def _row(self, key: Hashable, req: GenRequest, prompt: list[int]) -> NewRow:
        grammar = self.grammars.for_schema(req.json_schema) if req.json_schema is not None else None
        return NewRow(key=key, prompt=prompt, max_new_tokens=req.max_new_tokens, grammar=grammar)

    def advance(
        self,
        stream: DecodeStream,
        admit: list[tuple[Hashable, GenRequest, list[int]]],
        drop: set[Hashable] = frozenset(),
        should_yield: Callable[[], bool] = lambda: False,
    ) -> list[Finished]:
        """Admit newcomers, then decode until a row finishes, ``should_yield()`` says that others
        wait for a free slot, or the batch is empty. Returns the finished rows (``result()`` turns
        one into a ``GenResult``)."""
        with self._lock:
            stream.drop(set(drop))
            stream.admit([self._row(key, req, prompt) for key, req, prompt in admit])
            finished = []
            while stream.active and not finished:
                finished = stream.step()
                if should_yield():
                    break
        return finished

    def result(self, f: Finished, req: GenRequest, prompt: list[int]) -> GenResult:
        text = self.tokenizer.decode(f.tokens, skip_special_tokens=True).strip()
        if req.json_schema is not None:
            # Byte-level tokens can put a raw control character inside a JSON string. Compact
            # JSON has no whitespace outside strings, so escaping them all is lossless.
            text = _CONTROL_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return GenResult(text=text, input_tokens=len(prompt), output_tokens=len(f.tokens), complete=f.complete)

    def generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]]) -> list[GenResult]:
        """Decode requests that share ``sampling_key()`` as one batch (no newcomers join);
        ``prompts`` are fitted token ids. Finished rows leave the batch early."""
        assert reqs and len(reqs) == len(prompts)
        stream = self.open_stream(reqs[0])
        rows = [self._row(i, r, p) for i, (r, p) in enumerate(zip(reqs, prompts, strict=True))]
        with self._lock:
            done = decode_all(stream, rows)
        return [self.result(done[i], reqs[i], prompts[i]) for i in range(len(reqs))]

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
        self.grammars = None
