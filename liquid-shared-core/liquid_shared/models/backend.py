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

from liquid_shared import compute_thread
from liquid_shared.models.decoding import DecodeStats, DecodeStream, Finished, NewRow, decode_all
from liquid_shared.models.errors import GenerationError, ModelUnloaded, PromptTooLong
from liquid_shared.models.grammar import GrammarCache
from liquid_shared.models.loading import load_model_and_tokenizer, weight_bytes
from liquid_shared.models.prefix_cache import PrefixCache
from liquid_shared.models.spec import ModelSpec
from liquid_shared.models.tool_format_lfm2 import MARKERS, detect_tool_format

_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")


@dataclass
class GenRequest:
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.3
    min_p: float = 0.15
    repetition_penalty: float = 1.05
    top_p: float = 1.0
    seed: int | None = 0  # per row: requests with different seeds share a batch
    stop_sequences: tuple[str, ...] = ()
    ebnf: str | None = None  # a grammar instead of ``json_schema`` (LFM2's tool-call step, ``tool_format_lfm2``)
    tools: list[dict[str, Any]] | None = None  # rendered by the chat template (``tools=``), for its own tool format
    keep_special_tokens: bool = False  # decode the text with special tokens (LFM2's call markers)
    grammar: Any = None  # the compiled ``json_schema``/``ebnf`` (``LocalLiquidModel.compile``), set before batching
    on_token: Callable[[int], None] | None = None  # streaming: each new token id, from the decoding thread

    def sampling_key(self) -> tuple:
        """Requests with equal keys can share one running batch (token budgets and seeds may differ)."""
        return (self.temperature, self.min_p, self.repetition_penalty, self.top_p)


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
        self.closed = False
        self._closing = False  # set by close(): the decode loop returns after its current step
        self.stats = DecodeStats()  # totals over every stream of this model
        # the system turn's cache, shared by every stream of this model (None: disabled)
        mb = spec.prefix_cache_mb
        if mb is None:
            from liquid_shared.config import get_settings

            mb = get_settings().prefix_cache_mb
        self.prefix_cache = PrefixCache(int(mb * 2**20)) if mb > 0 else None
        self._system_ids: dict[str, list[int]] = {}  # rendered system turns (no tools), by content
        self._special = _special_token_texts(self.tokenizer)
        # the template's own tool-call format ("lfm2"), or None: the JSON convention (chat_format)
        self.tool_format = detect_tool_format(self.tokenizer)

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
    def render(self, messages: list[dict[str, str]], generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Prompt token ids (``tools``: passed to the chat template). Text of a control token
        (``<|im_end|>``) inside a message is tokenised as plain text, never as the token: a document
        cannot end a turn or fake a role. The one exception: the tool-call markers of the template's
        own format in an assistant turn (our rendering of the model's earlier calls)."""
        tok = self.tokenizer
        if any(t in m["content"] for m in messages for t in self._special):
            return self._render_escaped(messages, generation_prompt, tools)
        if getattr(tok, "chat_template", None):
            extra = {"tools": tools} if tools else {}
            ids = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True, **extra)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return list(ids)
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + ("assistant: " if generation_prompt else "")
        return tok(text)["input_ids"]

    def _content_ids(self, message: dict[str, str]) -> list[int]:
        tok, content = self.tokenizer, message["content"]
        if message["role"] != "assistant" or self.tool_format is None:
            return tok(content, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids: list[int] = []
        for piece in re.split("(" + "|".join(re.escape(m) for m in MARKERS) + ")", content):
            if piece in MARKERS:
                ids += tok(piece, add_special_tokens=False)["input_ids"]
            elif piece:
                ids += tok(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return ids

    def _render_escaped(self, messages: list[dict[str, str]], generation_prompt: bool,
                        tools: list[dict[str, Any]] | None = None) -> list[int]:
        # Render the template around placeholders, then tokenise the template's own text with its
        # special tokens and each message's content with special-token text split into plain pieces.
        tok = self.tokenizer
        marked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        if getattr(tok, "chat_template", None):
            extra = {"tools": tools} if tools else {}
            text = tok.apply_chat_template(marked, add_generation_prompt=generation_prompt, tokenize=False, **extra)
            add_special = False
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in marked) + ("assistant: " if generation_prompt else "")
            add_special = True
        ids: list[int] = []
        for n, piece in enumerate(re.split(r"\ue000(\d+)\ue001", text)):
            if not piece:
                continue
            if n % 2:  # a placeholder: the message's own content
                ids += self._content_ids(messages[int(piece)])
            else:
                ids += tok(piece, add_special_tokens=add_special and not ids)["input_ids"]
        return ids

    def fit_context(self, ids: list[int], messages: list[dict[str, str]], max_new_tokens: int,
                    tools: list[dict[str, Any]] | None = None) -> tuple[list[int], bool]:
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
        head = min(len(self.render(system, generation_prompt=False, tools=tools)) if system else 0, limit // 2)
        return ids[:head] + ids[len(ids) - (limit - head):], True

    # --------------------------------------------------------------- generation
    def compile(self, req: GenRequest) -> None:
        """Compile ``req.json_schema`` into ``req.grammar`` (cached per schema). Raises
        ``GenerationError`` naming the problem, for this request alone, before it joins a batch."""
        if (req.json_schema is None and req.ebnf is None) or req.grammar is not None:
            return
        self._check_open()
        try:
            if req.ebnf is not None:
                req.grammar = self.grammars.for_ebnf(req.ebnf)
            else:
                req.grammar = self.grammars.for_schema(req.json_schema)
        except Exception as exc:  # xgrammar raises RuntimeError with its parser's message
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GenerationError(
                f"model {self.spec.model!r}: the output JSON schema cannot be compiled into a grammar: {first}"
            ) from exc

    def _check_open(self) -> None:
        if self.closed:
            raise ModelUnloaded(f"model {self.spec.model!r} was unloaded; retry to load it again")

    def open_stream(self, req: GenRequest, max_rows: int = 1) -> DecodeStream:
        """A running batch for requests with ``req.sampling_key()`` (see ``decoding``), its cache
        sized for ``max_rows`` rows."""
        self._check_open()
        eos = self.tokenizer.eos_token_id
        return DecodeStream(
            self.model,
            pad_id=self.tokenizer.pad_token_id,
            eos_ids=set(eos) if isinstance(eos, list) else {eos},
            grammar_vocab_size=self.grammars.vocab_size,
            temperature=req.temperature,
            min_p=req.min_p,
            repetition_penalty=req.repetition_penalty,
            top_p=req.top_p,
            stats=self.stats,
            prefix_cache=self.prefix_cache,
            max_rows=max_rows,
        )

    def shared_prefix_len(self, messages: list[dict[str, str]], prompt: list[int],
                          tools: list[dict[str, Any]] | None = None) -> int:
        """Tokens of ``prompt`` that are the rendered system turn (0: none, or the rendering of the
        turn alone is not a prefix of the whole prompt, or the prompt was truncated into it)."""
        if self.prefix_cache is None or len(messages) < 2 or messages[0].get("role") != "system":
            return 0
        content = messages[0]["content"]
        ids = self._system_ids.get(content) if tools is None else None
        if ids is None:
            ids = self.render(messages[:1], generation_prompt=False, tools=tools)
            if tools is None:
                if len(self._system_ids) >= 1024:
                    self._system_ids.clear()
                self._system_ids[content] = ids
        return len(ids) if len(ids) < len(prompt) and prompt[:len(ids)] == ids else 0

    def _row(self, key: Hashable, req: GenRequest, prompt: list[int]) -> NewRow:
        self.compile(req)
        return NewRow(key=key, prompt=prompt, max_new_tokens=req.max_new_tokens, grammar=req.grammar,
                      seed=req.seed, stop=self._stop_check(req.stop_sequences), on_token=req.on_token,
                      prefix_len=self.shared_prefix_len(req.messages, prompt, req.tools))

    def _stop_check(self, stops: tuple[str, ...]) -> Callable[[list[int]], bool] | None:
        if not stops:
            return None
        tok, longest = self.tokenizer, max(len(s) for s in stops)

        def hit(tokens: list[int]) -> bool:
            # the newest tokens hold at least as many characters as the longest stop sequence
            tail = tok.decode(tokens[-(longest + 2):], skip_special_tokens=True)
            return any(s in tail for s in stops)

        return hit

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
            self._check_open()
            stream.drop(set(drop))
            stream.admit([self._row(key, req, prompt) for key, req, prompt in admit])
            finished = []
            while stream.active and not finished:
                finished = stream.step()
                if self._closing or should_yield():
                    break
        return finished

    def result(self, f: Finished, req: GenRequest, prompt: list[int]) -> GenResult:
        text = self.tokenizer.decode(f.tokens, skip_special_tokens=not req.keep_special_tokens).strip()
        for stop in req.stop_sequences:  # the text ends before the first stop sequence
            if stop in text:
                text = text[: text.index(stop)].rstrip()
        if req.json_schema is not None:
            # Byte-level tokens can put a raw control character inside a JSON string. Compact
            # JSON has no whitespace outside strings, so escaping them all is lossless.
            text = escape_control_chars(text)
        return GenResult(text=text, input_tokens=len(prompt), output_tokens=len(f.tokens), complete=f.complete)

    def generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]]) -> list[GenResult]:
        """Decode requests that share ``sampling_key()`` as one batch (no newcomers join);
        ``prompts`` are fitted token ids. Finished rows leave the batch early."""
        assert reqs and len(reqs) == len(prompts)
        stream = self.open_stream(reqs[0], max_rows=len(reqs))
        rows = [self._row(i, r, p) for i, (r, p) in enumerate(zip(reqs, prompts, strict=True))]
        with self._lock:
            self._check_open()
            done = compute_thread.run(decode_all, stream, rows)  # torch work on one thread
        return [self.result(done[i], reqs[i], prompts[i]) for i in range(len(reqs))]

    def close(self) -> None:
        """Drop the weights. Waits for a decode call in progress (the backend lock), so a batch is
        never cut mid-step; later calls raise ``ModelUnloaded``."""
        self._closing = True
        with self._lock:
            self.closed = True
            self.model = None
            self.grammars = None
            if self.prefix_cache is not None:
                self.prefix_cache.clear()


def escape_control_chars(text: str) -> str:
    """JSON-escape raw control characters (byte-level tokens can put one inside a JSON string)."""
    return _CONTROL_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _special_token_texts(tokenizer: Any) -> tuple[str, ...]:
    """Texts of the tokenizer's special (control) tokens, e.g. ``<|im_end|>``."""
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            texts.add(str(token))
    return tuple(sorted(t for t in texts if t))
