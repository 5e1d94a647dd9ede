"""The shared data model of the stack, written as JSONL with a schema version.

Ids are content hashes (sha256, hex, truncated to 16 chars) so that the same input always gets the
same id: re-running a pipeline reproduces ids, and resumed runs never duplicate records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liquid_shared.atomic import atomic_file

SCHEMA_VERSION = 1


def content_hash(*parts: str, length: int = 16) -> str:
    """Stable id from text parts (sha256 over the parts joined by a unit separator)."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:length]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION


class Document(Record):
    doc_id: str
    source: str = Field(description="Path or URI the document came from.")
    title: str = ""
    text: str
    content_hash: str = Field(description="sha256 of the raw bytes (full hex), for incremental runs.")
    mime: str = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, source: str, title: str = "", **kw: Any) -> Document:
        full = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(doc_id=content_hash(source, full), source=source, title=title, text=text, content_hash=full, **kw)


class Chunk(Record):
    chunk_id: str
    doc_id: str
    text: str
    position: int = Field(ge=0, description="0-based order of the chunk in its document.")
    section_path: list[str] = Field(default_factory=list)
    start_char: int = 0
    end_char: int = 0
    n_tokens: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @staticmethod
    def make_id(doc_id: str, position: int, text: str) -> str:
        return content_hash(doc_id, str(position), text)


class Importance(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class ChunkMetadata(Record):
    chunk_id: str
    tags: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list)
    importance: Importance = Importance.medium
    section: str = ""
    category: str | None = None
    taxonomy: list[str] = Field(default_factory=list, description="Root-to-leaf taxonomy path.")
    facts: list[str] = Field(default_factory=list, description="Atomic facts stated by the chunk.")
    tmd: str | None = Field(None, description="TMD code 'domain.task.modifier'.")
    source: Literal["llm", "fallback"] = "llm"


class Summary(Record):
    chunk_id: str
    summary: str
    embedding_text: str = Field("", description="Text to embed for retrieval (summary plus key terms).")
    source: Literal["llm", "fallback"] = "llm"


class QuestionType(str, Enum):
    factual = "factual"
    conceptual = "conceptual"
    procedural = "procedural"
    comparative = "comparative"
    causal = "causal"


class QAPair(Record):
    qa_id: str
    chunk_id: str
    doc_id: str
    question: str
    answer: str
    question_type: QuestionType = QuestionType.factual

    @staticmethod
    def make_id(chunk_id: str, question: str, answer: str) -> str:
        return content_hash(chunk_id, question.strip().lower(), answer.strip().lower())


class ValidationResult(Record):
    qa_id: str
    valid: bool
    grounded: bool = Field(description="Answer supported by the chunk text (lexical/semantic check).")
    judge_score: float | None = Field(None, ge=0, le=1, description="LLM judge score in [0, 1], None if no judge.")
    grounding_score: float = Field(0.0, ge=0, le=1)
    reasons: list[str] = Field(default_factory=list)
    answer_span: str | None = Field(
        None, description="The span of the chunk that stands for the answer (the 'precision' validation profile): "
        "the fine-tuning target of a valid pair; None = the generated answer as it is.")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class FineTuneSample(Record):
    sample_id: str
    qa_id: str
    chunk_id: str
    messages: list[ChatMessage]

    def to_chat_json(self) -> dict[str, Any]:
        """The ecosystem's chat format: ``{"messages": [{"role": ..., "content": ...}, ...]}``."""
        return {"messages": [m.model_dump() for m in self.messages]}

    def to_alpaca_json(self) -> dict[str, str]:
        """The Alpaca convention: ``instruction`` = the task or question, ``input`` = the context,
        ``output`` = the answer. A user message ``"Context:\n<ctx>\n\nQuestion: <q>"`` (the ETL's)
        splits into ``<q>`` and ``<ctx>``; any other user message is the instruction, with no input."""
        user = next(m.content for m in self.messages if m.role == "user")
        answer = next(m.content for m in self.messages if m.role == "assistant")
        instruction, context = user, ""
        if user.startswith("Context:\n") and "\n\nQuestion: " in user:
            head, _, question = user.rpartition("\n\nQuestion: ")
            instruction, context = question.strip(), head[len("Context:\n"):].strip()
        return {"instruction": instruction, "input": context, "output": answer}


R = TypeVar("R", bound=BaseModel)


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records atomically (``liquid_shared.atomic``). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_file(path, "w") as fh:
        for rec in records:
            line = rec.model_dump_json() if isinstance(rec, BaseModel) else json.dumps(rec, ensure_ascii=False)
            fh.write(line + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path, model: type[R]) -> Iterator[R]:
    """Read and validate records; an invalid line raises ``ValueError`` naming file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as exc:
                raise ValueError(f"{path}:{lineno}: not a valid {model.__name__}: {exc}") from exc
