"""Helpers of the ETL tests (imported by name: the folder is put on ``sys.path`` by conftest).

``ScriptedModels`` is a pydantic-ai ``FunctionModel`` that answers each ETL agent from its output
schema with content taken from the prompt (so QA answers are grounded). It is used only where a
test is about orchestration (concurrency, fallbacks, resume bookkeeping); the end-to-end tests
use the real offline model.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections import Counter
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.profiles import ModelProfile

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"

NATIVE = ModelProfile(supports_json_schema_output=True, default_structured_output_mode="native")


def _prompt_text(messages: list[ModelMessage]) -> str:
    parts = [p for m in messages for p in getattr(m, "parts", []) if getattr(p, "part_kind", "") == "user-prompt"]
    return str(parts[-1].content) if parts else ""


def _passage(prompt: str) -> str:
    body = prompt.split(":\n", 1)[1] if ":\n" in prompt else prompt
    return body.split("\n\nQuestion:", 1)[0]


class ScriptedModels:
    """A FunctionModel per model role; records calls and the most requests seen in flight."""

    def __init__(self, *, fail_stages: set[str] = frozenset(), garbage_stages: set[str] = frozenset(), delay_rounds: int = 3,
                 hold_until: int | None = None, hold_seconds: float = 2.0):
        # hold_until: a request waits (up to hold_seconds) until that many requests of its stage are
        # in flight, as a batching model would, so the test does not depend on how fast the machine is.
        self.hold_until = hold_until
        self.hold_seconds = hold_seconds
        self.fail_stages = set(fail_stages)
        self.garbage_stages = set(garbage_stages)
        self.delay_rounds = delay_rounds
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stage_in_flight: Counter[str] = Counter()
        self.max_stage_in_flight: Counter[str] = Counter()
        self.models: dict[str, FunctionModel] = {}

    def __call__(self, profile_stage: str) -> FunctionModel:
        if profile_stage not in self.models:
            self.models[profile_stage] = FunctionModel(self._respond, model_name=f"scripted-{profile_stage}", profile=NATIVE)
        return self.models[profile_stage]

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        out = info.model_request_parameters.output_object
        name = (out.json_schema.get("title") if out else None) or "text"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.stage_in_flight[name] += 1
        self.max_stage_in_flight[name] = max(self.max_stage_in_flight[name], self.stage_in_flight[name])
        try:
            for _ in range(self.delay_rounds):  # let other requests arrive, as a batching model would
                await asyncio.sleep(0)
            if self.hold_until is not None:
                deadline = asyncio.get_running_loop().time() + self.hold_seconds
                # polling with a deadline, on purpose
                while self.stage_in_flight[name] < self.hold_until and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            self.calls[name] += 1
            if name in self.fail_stages:
                raise RuntimeError(f"scripted failure for {name}")
            if name in self.garbage_stages:
                return ModelResponse(parts=[TextPart('{"not": "what you asked for"')])
            answer = self._answer(name, _prompt_text(messages))
            if name.startswith("QAOut"):  # respect the schema's bound, as constrained decoding would
                answer["pairs"] = answer["pairs"][: out.json_schema["properties"]["pairs"].get("maxItems", 2)]
            return ModelResponse(parts=[TextPart(json.dumps(answer))])
        finally:
            self.in_flight -= 1
            self.stage_in_flight[name] -= 1

    @staticmethod
    def _answer(name: str, prompt: str) -> dict:
        passage = _passage(prompt)
        words = re.findall(r"[A-Za-z]{4,}", passage)
        first = (words or ["text", "here"])[:4]
        sentence = re.split(r"(?<=[.!?])\s+", passage.strip())[0][:100]
        if name in ("MetadataOut", "GroundedMetadataOut"):
            return {"tags": first[:2], "keywords": first, "entities": first[:1], "importance": "high"}
        if name == "ClassificationOut":
            return {"category": "science"}
        if name == "TaxonomyOut":
            return {"path": [{"name": "Science", "importance": "medium"}, {"name": first[0].title(), "importance": "high"}]}
        if name == "FactsOut":
            return {"facts": sentence if len(sentence) >= 8 else sentence + " (a fact)."}
        if name == "SummaryOut":
            return {"summary": (sentence + " In short.")[:200]}
        if name.startswith("QAOut"):
            return {
                "pairs": [
                    {"question": f"What does the passage say about {first[0]}?", "answer": " ".join(first[:3]), "kind": "factual"},
                    {"question": f"Which words follow {first[1] if len(first) > 1 else first[0]}?", "answer": " ".join(first[1:4]), "kind": "conceptual"},
                ]
            }
        if name == "QuestionOut":  # extractive mode: the answer, reversed, so the reader can find it
            answer = prompt.rsplit("\n\nAnswer: ", 1)[-1]
            return {"question": f"Which span reads backwards as {answer[::-1]}?"}
        if name == "Span":  # the reader: the span the question points at
            return {"answer": prompt.rsplit(" reads backwards as ", 1)[-1].rstrip("?")[::-1]}
        if name == "JudgeOut":
            return {"supported": True, "score": 5}
        if name == "BoundaryOut":
            return {"starts": [2]}
        raise AssertionError(f"unexpected output type {name}")


def write_text_pdf(path: Path, title: str, paragraphs: list[str], *, width: int = 88) -> Path:
    """A small text PDF (matplotlib's PDF backend with embedded TrueType fonts, so pypdf can read it back)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig = plt.figure(figsize=(8.27, 11.69))
        y = 0.93
        fig.text(0.08, y, title, fontsize=16, weight="bold")
        y -= 0.05
        for para in paragraphs:
            lines = textwrap.wrap(para, width)
            fig.text(0.08, y, "\n".join(lines), fontsize=10, va="top", linespacing=1.5)
            y -= 0.024 * len(lines) + 0.03
        fig.savefig(path, format="pdf", metadata={"Title": title, "Creator": "liquid-stack tests"})
        plt.close(fig)
    return path


RUN_INDEX_FILES = ("index/docs.jsonl", "index/dense/index.faiss", "index/dense/ids.json")
"""The run index's files to compare between run folders (its manifest holds times and a version name)."""


def run_file(out: Path, name: str) -> bytes:
    """The bytes of ``name`` in run folder ``out``; ``index/...`` is read from the index's current version."""
    if name.startswith("index/"):
        from rag_runtime.index import data_folder

        return (data_folder(out) / name.removeprefix("index/")).read_bytes()
    return (out / name).read_bytes()
