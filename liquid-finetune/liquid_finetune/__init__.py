"""LoRA supervised fine-tuning (PEFT + TRL) on chat-format JSONL, with assistant-only loss.

    from liquid_finetune import FinetuneConfig, finetune
    result = finetune(FinetuneConfig(data="data/runs/samples-offline/ft/train.jsonl", output_dir="runs/ft"))
    # serve it: ModelSpec(model="offline:smollm2-135m-instruct", adapter=str(result.adapter_dir))

CLI: ``python -m liquid_finetune.finetune --help``. User guide: docs/finetune.md.
Heavy libraries (torch, transformers, peft, trl) load on first use, not on import.
"""

from __future__ import annotations

from liquid_finetune.chat_data import (
    ChatDataError,
    check_conversation,
    read_chat_jsonl,
    split_eval,
    write_chat_jsonl,
)
from liquid_finetune.masking import TemplateMaskError, assistant_char_spans, tokenize_conversation
from liquid_finetune.trainer import DEFAULT_BASE, FinetuneConfig, FinetuneResult, finetune

__all__ = [
    "DEFAULT_BASE", "ChatDataError", "FinetuneConfig", "FinetuneResult", "TemplateMaskError",
    "assistant_char_spans", "check_conversation", "finetune", "read_chat_jsonl", "split_eval",
    "tokenize_conversation", "write_chat_jsonl",
]
