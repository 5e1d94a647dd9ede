"""``ModelSpec``: what model to load, where, and how to sample from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# LiquidAI's published generation defaults for LFM2.
LFM2_SAMPLING = {"temperature": 0.3, "min_p": 0.15, "repetition_penalty": 1.05}


class ModelSpec(BaseModel):
    """A loadable model. Hashable: the registry loads each distinct spec once.

    ``model`` is a hub id (``LiquidAI/LFM2-1.2B``), a local folder, or an offline alias
    (``offline:smollm2-135m-instruct``); for a remote engine (``backend="openai"``) it is the
    model's name on the server, and ``base_url`` (``http://host:8000/v1``) says where the server
    is. Sampling fields apply to both backends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    backend: Literal["transformers", "openai"] = Field(
        "transformers",
        description="'transformers': in-process (our continuous batcher); 'openai': a remote OpenAI-compatible "
        "engine (vLLM, llama.cpp's llama-server, ...) through pydantic-ai's OpenAIChatModel.",
    )
    base_url: str | None = Field(None, description="Remote engine's OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the remote engine's API key (None: no key)."
    )
    request_timeout_s: float = Field(120.0, gt=0, description="Remote engine: seconds before one request times out.")
    max_retries: int = Field(4, ge=0, description="Remote engine: retries (exponential backoff) on HTTP 429/503 only.")
    adapter: str | None = Field(
        None,
        description="Folder of a PEFT LoRA adapter trained on `model` (liquid_finetune); the registry loads "
        "the base, applies the adapter and merges it into the weights (same decoding speed as the base).",
    )
    dtype: str | None = Field(
        None,
        description="'bf16', 'fp16', 'fp32', or 'int8' (CPU only: fp32 with int8 linear layers, 2-3x faster decode "
        "steps; greedy outputs differ from fp32 and may depend on batch-mates); None = LIQUID_DTYPE, else bf16 on "
        "CUDA (fp16 without bf16 support) and fp32 on CPU (bf16 on a CPU with AMX is faster for batched work: "
        "docs/benchmarks.md).",
    )
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:N'; None = settings or auto.")
    temperature: float = Field(LFM2_SAMPLING["temperature"], ge=0)
    min_p: float = Field(LFM2_SAMPLING["min_p"], ge=0, le=1)
    repetition_penalty: float = Field(LFM2_SAMPLING["repetition_penalty"], gt=0)
    max_new_tokens: int = Field(384, ge=1)
    max_batch_size: int | None = Field(
        None, ge=1, description="Most requests decoding at once in one running batch; for a remote engine, the most "
        "requests in flight to it from this process (match the server's --parallel slots). None = "
        "LIQUID_MAX_BATCH_SIZE (default 48) in process, LIQUID_OPENAI_MAX_CONCURRENCY (16) for a remote engine.",
    )
    context_overflow: Literal["truncate", "error"] = Field(
        "truncate",
        description="Prompt longer than the context window minus max_new_tokens: 'truncate' keeps the "
        "system prompt and the newest tokens (left truncation); 'error' raises PromptTooLong.",
    )
    prefix_cache_mb: float | None = Field(
        None, ge=0, description="In-process models: MB of memory for the shared-prefix cache (a request's system "
        "turn is prefilled once and reused by later requests with the same one; LRU). 0 disables it; None = "
        "settings (LIQUID_PREFIX_CACHE_MB, default 256).")
    context_window: int | None = Field(None, ge=16, description="Override the model's context length (tokens).")
    max_tool_rounds: int = Field(
        2, ge=0, description="Tool-call rounds per user turn before the grammar only allows a final answer."
    )
    remote_tool_calls: Literal["server", "json_schema"] = Field(
        "server",
        description="Remote engine: how a step with tools is sent. 'server': the request's tools= (the server's "
        "chat template renders them and its tool parser reads the call; vLLM with --enable-auto-tool-choice, "
        "llama-server --jinja with a tool-aware template). 'json_schema': our JSON convention ({\"tool\", "
        "\"arguments\"} per tool, or {\"final\"}) as the server's json_schema response format, history as plain "
        "turns, so any chat template works (e.g. SmolLM2's, which has no tool syntax).",
    )
    require_tool_first: bool = Field(
        False,
        description="When an agent has tools, the first step of each user turn must call one (small models "
        "otherwise answer from memory). pydantic-ai's tool_choice setting, when given, takes precedence.",
    )
    default_max_string_chars: int = Field(
        200, ge=1, description="Grammar cap on output strings that have no max_length of their own."
    )
    default_max_items: int = Field(8, ge=1, description="Grammar cap on output lists that have no max_length.")
    seed: int | None = Field(
        0, description="Sampling seed per request (each row draws from its own generator, so a seeded output does "
        "not depend on its batch-mates); None = nondeterministic.",
    )

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ModelSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"ModelSpec(model={self.model!r}, backend='openai') needs base_url (the server's /v1 URL)")
        if self.backend == "transformers" and (self.base_url or self.api_key_env):
            raise ValueError(f"ModelSpec(model={self.model!r}): base_url/api_key_env need backend='openai'")
        if self.backend == "transformers" and self.remote_tool_calls != "server":
            raise ValueError(f"ModelSpec(model={self.model!r}): remote_tool_calls is a remote-engine option "
                             "(the local backend always decodes tool calls under its own grammar)")
        return self

    @property
    def is_remote(self) -> bool:
        return self.backend != "transformers"

    @property
    def batch_limit(self) -> int:
        """``max_batch_size``, or the setting that stands for it (in process, or a remote engine's)."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        from liquid_shared.config import get_settings

        settings = get_settings()
        return settings.openai_max_concurrency if self.is_remote else settings.max_batch_size

    @property
    def label(self) -> str:
        return self.model.rsplit("/", 1)[-1]
