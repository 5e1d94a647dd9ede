"""Fine-tuning sets as (context, question, answer) items, whatever file they come from.

Sources:

* a JSONL file of chat records (``{"messages": [...]}``, the ETL's ``ft/train.jsonl``) or of
  ``FineTuneSample`` records (``ft/samples.jsonl``);
* an ETL run folder: ``select="ft"`` reads its ``ft/samples.jsonl`` (the validated set it wrote);
  ``"valid"``, ``"invalid"`` and ``"all"`` take the QA pairs of ``qa_pairs.jsonl`` by their
  ``validation.jsonl`` verdict, with the source chunk as context.

Each item records whether it is **schema-valid**: a chat record needs a user and an assistant
message with non-empty text, roles in a valid order, and a user message of the form
``Context:\\n<text>\\n\\nQuestion: <question>`` (the stack's fine-tuning format); a QA pair needs a
non-empty question ending in '?', a non-empty answer and a source chunk that exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Select = Literal["ft", "valid", "invalid", "all"]
_USER_FORMAT = re.compile(r"^\s*Context:\s*\n(?P<context>.*?)\n\s*\nQuestion:\s*(?P<question>.+?)\s*$", re.DOTALL)
_ROLES = ("system", "user", "assistant")


class FtSetError(ValueError):
    """A fine-tuning set cannot be read; the message names the path and the problem."""


@dataclass
class FtItem:
    item_id: str
    context: str
    question: str
    answer: str
    schema_valid: bool
    problems: list[str] = field(default_factory=list)


def chat_item(item_id: str, record: object) -> FtItem:
    """Check one chat record and pull out its context, question and answer."""
    problems: list[str] = []
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        return FtItem(item_id, "", "", "", False, ["no 'messages' list"])
    roles = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES or not isinstance(msg.get("content"), str):
            problems.append(f"message {i} is not {{role: system|user|assistant, content: str}}")
            continue
        roles.append(msg["role"])
        if not msg["content"].strip():
            problems.append(f"message {i} ({msg['role']}) is empty")
    if "system" in roles and roles.index("system") != 0:
        problems.append("the system message is not first")
    turns = [r for r in roles if r != "system"]
    repeated = any(a == b for a, b in zip(turns, turns[1:], strict=False))
    if not turns or turns[0] != "user" or turns[-1] != "assistant" or repeated:
        problems.append(f"roles {roles} do not alternate user/assistant ending with the assistant")
    user = next((m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "user"), "")
    answer = next((m["content"] for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), "")
    match = _USER_FORMAT.match(user or "")
    context, question = (match["context"].strip(), match["question"].strip()) if match else ("", (user or "").strip())
    if not match:
        problems.append("user message is not 'Context:\\n...\\n\\nQuestion: ...'")
    return FtItem(item_id, context, question, (answer or "").strip(), not problems, problems)


def read_chat_file(path: Path) -> list[FtItem]:
    items = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                items.append(FtItem(f"line-{lineno}", "", "", "", False, [f"invalid JSON ({exc.msg})"]))
                continue
            item_id = str(record.get("sample_id") or f"line-{lineno}") if isinstance(record, dict) else f"line-{lineno}"
            items.append(chat_item(item_id, record))
    return items


def _qa_items(run: Path, select: Select) -> list[FtItem]:
    from liquid_shared.schemas import Chunk, QAPair, ValidationResult, read_jsonl

    for name in ("qa_pairs.jsonl", "chunks.jsonl", "validation.jsonl"):
        if not (run / name).is_file():
            raise FtSetError(f"ETL run {run} has no {name}, needed for select={select!r}")
    chunks = {c.chunk_id: c.text for c in read_jsonl(run / "chunks.jsonl", Chunk)}
    verdict = {v.qa_id: v.valid for v in read_jsonl(run / "validation.jsonl", ValidationResult)}
    items = []
    for pair in read_jsonl(run / "qa_pairs.jsonl", QAPair):
        valid = verdict.get(pair.qa_id, False)
        if (select == "valid" and not valid) or (select == "invalid" and valid):
            continue
        problems = []
        if not pair.question.strip().endswith("?"):
            problems.append("question does not end with '?'")
        if not pair.answer.strip():
            problems.append("empty answer")
        if pair.chunk_id not in chunks:
            problems.append(f"source chunk {pair.chunk_id} not in chunks.jsonl")
        items.append(FtItem(pair.qa_id, chunks.get(pair.chunk_id, ""), pair.question.strip(), pair.answer.strip(),
                            not problems, problems))
    return items


def load_ft_set(path: Path, select: Select = "ft") -> list[FtItem]:
    """Items of one fine-tuning set (see the module docstring for the sources)."""
    path = Path(path)
    if not path.exists():
        raise FtSetError(f"fine-tuning set {path} does not exist (give an ETL run folder or a JSONL file)")
    if path.is_file():
        return read_chat_file(path)
    if select == "ft":
        for candidate in (path / "ft" / "samples.jsonl", path / "ft" / "train.jsonl"):
            if candidate.is_file():
                return read_chat_file(candidate)
        raise FtSetError(f"{path} has no ft/samples.jsonl or ft/train.jsonl (is it an ETL run folder?)")
    return _qa_items(path, select)
