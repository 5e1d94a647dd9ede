"""Tokens and loss mask of a conversation: the loss is computed on assistant tokens only.

TRL's ``assistant_only_loss`` needs a chat template with ``{% generation %}`` markers; SmolLM2's
template has none, and TRL's ``get_training_chat_template`` has no patched version of it. So the
mask is built here, from the tokenizer's own chat template, for any template that renders
conversations prefix-preservingly (rendering the first k messages gives a prefix of rendering all):

* the full conversation is rendered once (``apply_chat_template(tokenize=False)``) and tokenised
  with character offsets (``add_special_tokens=False``: the template writes its special tokens);
* for every assistant message i, its span runs from the end of ``render(messages[:i],
  add_generation_prompt=True)`` (the assistant header is prompt, not target) to the end of
  ``render(messages[:i + 1])``: its content and the template's end-of-turn tokens (``<|im_end|>``),
  so the model learns to stop;
* a token is in the loss when its characters lie inside an assistant span.

A template that is not prefix-preserving raises ``TemplateMaskError`` rather than a wrong mask.
The result is TRL's pre-tokenised format (``input_ids`` + ``assistant_masks``), from which TRL
builds the labels (-100 where the mask is 0).
"""

from __future__ import annotations

from typing import Any

from liquid_finetune.chat_data import Conversation


class TemplateMaskError(ValueError):
    """The chat template does not render conversations prefix-preservingly; no reliable mask exists."""


def _render(tokenizer: Any, messages: Conversation, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = _render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise TemplateMaskError(
                f"the chat template of {getattr(tokenizer, 'name_or_path', 'this tokenizer')!r} does not render "
                f"message {i} prefix-preservingly, so assistant tokens cannot be located for the loss mask")
        spans.append((len(prompt), len(upto)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: Conversation) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``assistant_masks`` (1 = in the loss)."""
    text, spans = assistant_char_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, end in encoded["offset_mapping"]:
        mask.append(int(end > start and any(a <= start and end <= b for a, b in spans)))
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}
