"""``ModelSpec``: what model to load, where, and how to sample from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# LiquidAI's published generation defaults for LFM2.
LFM2_SAMPLING = {"temperature": 0.3, "min_p": 0.15, "repetition_penalty": 1.05}


class ModelSpec(BaseModel):
    """A loadable model. Hashable: the registry loads each distinct spec once.

    ``model`` is a hub id (``LiquidAI/LFM2-1.2B``), a local folder, or an offline alias
    (``offline:smollm2-135m-instruct``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    backend: Literal["transformers"] = "transformers"
    adapter: str | None = Field(
        None,
        description="Folder of a PEFT LoRA adapter trained on `model` (liquid_finetune); the registry loads "
        "the base, applies the adapter and merges it into the weights (same decoding speed as the base).",
    )
    dtype: str | None = Field(
        None,
        description="'bf16', 'fp16', 'fp32'; None = LIQUID_DTYPE, else bf16 on CUDA (fp16 without bf16 "
        "support) and fp32 on CPU (bf16 on a CPU with AMX is faster for batched work: docs/benchmarks.md).",
    )
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:N'; None = settings or auto.")
    temperature: float = Field(LFM2_SAMPLING["temperature"], ge=0)
    min_p: float = Field(LFM2_SAMPLING["min_p"], ge=0, le=1)
    repetition_penalty: float = Field(LFM2_SAMPLING["repetition_penalty"], gt=0)
    max_new_tokens: int = Field(384, ge=1)
    max_batch_size: int = Field(16, ge=1, description="Most requests decoding at once in one running batch.")
    context_overflow: Literal["truncate", "error"] = Field(
        "truncate",
        description="Prompt longer than the context window minus max_new_tokens: 'truncate' keeps the "
        "system prompt and the newest tokens (left truncation); 'error' raises PromptTooLong.",
    )
    context_window: int | None = Field(None, ge=16, description="Override the model's context length (tokens).")
    max_tool_rounds: int = Field(
        2, ge=0, description="Tool-call rounds per user turn before the grammar only allows a final answer."
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
    seed: int | None = Field(0, description="Sampling seed per request batch (None = nondeterministic).")

    @property
    def label(self) -> str:
        return self.model.rsplit("/", 1)[-1]
