"""The transformers backend: one loaded causal LM that generates for many prompts at once.

``LocalLiquidModel.generate_batch`` takes requests that share sampling settings, renders each with
the tokenizer's chat template, applies the context-window policy, left-pads them into one batch
and runs a single ``generate``. Each row may carry its own JSON schema (xgrammar-constrained) or
none (free text).

Sampling order matters with constraints: we mask to the grammar *first* and then apply
temperature and min-p, so min-p never keeps only tokens the grammar forbids (which would leave
an all ``-inf`` row and crash sampling).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper

from liquid_shared.models.errors import PromptTooLong
from liquid_shared.models.grammar import GrammarCache, RowGrammarProcessor
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
        """Requests with equal keys can share one ``generate`` (token budgets may differ)."""
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
    """A loaded model + tokenizer + grammar cache. Thread-safe: one ``generate`` at a time."""

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
        self.calls = 0
        self.rows = 0

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
    @torch.inference_mode()
    def generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]]) -> list[GenResult]:
        """Generate for requests that share ``sampling_key()``; ``prompts`` are fitted token ids."""
        assert reqs and len(reqs) == len(prompts)
        first = reqs[0]
        tok = self.tokenizer
        pad_id = tok.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p):] = 1
        device = self.placement.device
        input_ids, attention = input_ids.to(device), attention.to(device)

        processors = LogitsProcessorList()
        grammar_proc = None
        if any(r.json_schema is not None for r in reqs):
            grammars = [self.grammars.for_schema(r.json_schema) if r.json_schema is not None else None for r in reqs]
            grammar_proc = RowGrammarProcessor(grammars, self.grammars.vocab_size)
            processors.append(grammar_proc)
        sample = first.temperature > 0
        if sample:
            processors.append(TemperatureLogitsWarper(first.temperature))
            if first.min_p > 0:
                processors.append(MinPLogitsWarper(first.min_p))
        gen_kwargs: dict[str, Any] = dict(
            max_new_tokens=max(r.max_new_tokens for r in reqs),
            do_sample=sample,
            repetition_penalty=first.repetition_penalty,
            pad_token_id=pad_id,
            eos_token_id=tok.eos_token_id,
            logits_processor=processors,
        )
        if sample:
            # our processors do temperature/min-p after the grammar mask; neutralise the built-in ones
            gen_kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
        else:
            gen_kwargs.update(temperature=None, top_k=None, top_p=None)
        with self._lock:
            if first.seed is not None:
                torch.manual_seed(first.seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **gen_kwargs)
            self.calls += 1
            self.rows += len(reqs)
        new = out[:, width:].cpu()
        results = []
        for i, p in enumerate(prompts):
            row = new[i].tolist()[: reqs[i].max_new_tokens]  # a row's own budget, in a longer batch
            n_out = len(row)
            ended = False
            for j, t in enumerate(row):
                if t == tok.eos_token_id or (t == pad_id and j > 0 and pad_id != tok.eos_token_id):
                    n_out, ended = j, True
                    break
            text = tok.decode(row[:n_out], skip_special_tokens=True).strip()
            if reqs[i].json_schema is not None:
                # Byte-level tokens can put a raw control character inside a JSON string. Compact
                # JSON has no whitespace outside strings, so escaping them all is lossless.
                text = _CONTROL_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
            complete = ended and (grammar_proc is None or grammar_proc.terminated(i) or reqs[i].json_schema is None)
            results.append(GenResult(text=text, input_tokens=len(p), output_tokens=n_out, complete=complete))
        return results

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
        self.grammars = None
