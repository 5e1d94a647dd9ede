"""Chat-format JSONL for supervised fine-tuning: one ``{"messages": [{"role", "content"}, ...]}`` a line.

This is what the ETL writes to ``ft/train.jsonl``. Every line is checked: valid JSON, an object
with a ``messages`` list, each message a ``role`` in system/user/assistant with string
``content``, and at least one non-empty assistant message (the only tokens the loss is computed
on). A bad line raises ``ChatDataError`` naming the file, the line and what is wrong; an empty file
(or one with only blank lines) is an error too, since training on nothing is never what was meant.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

ROLES = ("system", "user", "assistant")
Conversation = list[dict[str, str]]


class ChatDataError(ValueError):
    """A chat-format training file is missing, empty or has a malformed line (named in the message)."""


def check_conversation(record: object, where: str) -> Conversation:
    """The record's messages as plain dicts, or ``ChatDataError`` saying what is wrong at ``where``."""
    if not isinstance(record, dict):
        raise ChatDataError(f"{where}: a line must be a JSON object with 'messages', got {type(record).__name__}")
    messages = record.get("messages")
    if messages is None:
        raise ChatDataError(f"{where}: no 'messages' field (fields: {sorted(record)[:8]})")
    if not isinstance(messages, list) or not messages:
        raise ChatDataError(f"{where}: 'messages' must be a non-empty list")
    out: Conversation = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatDataError(f"{where}: messages[{i}] must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ChatDataError(f"{where}: messages[{i}] has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ChatDataError(f"{where}: messages[{i}] ({role}) has no string 'content'")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise ChatDataError(f"{where}: no non-empty assistant message, so there is nothing to train on")
    return out


def read_chat_jsonl(path: str | Path) -> list[Conversation]:
    """Every conversation of a chat-format JSONL file, checked line by line."""
    path = Path(path)
    if not path.is_file():
        raise ChatDataError(f"training file {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ChatDataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            conversations.append(check_conversation(record, where))
    if not conversations:
        raise ChatDataError(f"training file {path} has no conversations (it is empty)")
    return conversations


def split_eval(conversations: Sequence[Conversation], eval_fraction: float, seed: int,
               ) -> tuple[list[Conversation], list[Conversation]]:
    """A seeded (train, eval) split; eval gets round(fraction * n) items, at least 1 when fraction > 0."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_eval = 0 if eval_fraction == 0 else max(1, round(eval_fraction * len(order)))
    if n_eval >= len(order):
        raise ChatDataError(f"{len(order)} conversation(s) cannot be split into training and evaluation sets "
                            f"(eval_fraction={eval_fraction}); give more data or eval_fraction=0")
    eval_ids, train_ids = sorted(order[:n_eval]), sorted(order[n_eval:])
    return [conversations[i] for i in train_ids], [conversations[i] for i in eval_ids]


def write_chat_jsonl(path: str | Path, conversations: Sequence[Conversation]) -> Path:
    """Write conversations in the same format (atomically, through ``liquid_shared.schemas.write_jsonl``)."""
    from liquid_shared.schemas import write_jsonl

    write_jsonl(path, [{"messages": c} for c in conversations])
    return Path(path)
