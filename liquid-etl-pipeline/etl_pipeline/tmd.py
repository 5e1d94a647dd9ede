"""TMD codes: Domain, Task and Modifier of a chunk, from one fixed label table.

The code of a chunk is ``"<domain>.<task>.<modifier>"``, e.g. ``"life.explanation.introductory"``;
``tmd_indices`` gives the same as three integers (positions in the tables below, stable across
versions: labels are only ever appended).

* **Domain**: what field the passage is about.
* **Task**: what the passage does for its reader (define, explain, instruct, ...).
* **Modifier**: its register or stance (introductory, technical, cautionary, ...).

Assignment is deterministic and needs no LLM: each label has a one-line description; a chunk gets,
on each axis, the label whose description embedding is nearest (cosine) to the chunk's embedding
(all-MiniLM-L6-v2, the same vectors the FAISS index holds). The same chunk text always gets the
same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DOMAINS: tuple[tuple[str, str], ...] = (
    ("science", "physics, chemistry, astronomy, geology and the physical world"),
    ("life", "biology, ecology, plants, animals and living organisms"),
    ("health", "medicine, the human body, nutrition, illness and treatment"),
    ("technology", "computers, software, engineering, machines and tools"),
    ("mathematics", "mathematics, numbers, statistics and logical reasoning"),
    ("history", "past events, historical periods, ancient civilisations and people of the past"),
    ("society", "politics, law, economics, business, work and social institutions"),
    ("culture", "art, music, literature, language, food, sport and traditions"),
    ("geography", "places, countries, climate, weather, oceans and the environment"),
    ("general", "everyday matters that belong to no particular field"),
)

TASKS: tuple[tuple[str, str], ...] = (
    ("definition", "defines a term or says what something is"),
    ("explanation", "explains how or why something works or happens"),
    ("procedure", "gives step-by-step instructions for doing something"),
    ("comparison", "compares or contrasts two or more things"),
    ("narrative", "tells events in the order they happened"),
    ("argument", "argues for a view, gives advice or a recommendation"),
    ("data", "reports numbers, measurements, quantities or statistics"),
    ("enumeration", "lists examples, kinds, parts or items"),
)

MODIFIERS: tuple[tuple[str, str], ...] = (
    ("introductory", "plain, simple language for a beginner or general reader"),
    ("technical", "specialised technical vocabulary and precise detail"),
    ("cautionary", "a warning about a risk, danger, mistake or limitation"),
    ("historical", "about how things were in the past"),
    ("current", "about the present day and recent developments"),
    ("speculative", "uncertain, hypothetical or about the future"),
)

AXES: dict[str, tuple[tuple[str, str], ...]] = {"domain": DOMAINS, "task": TASKS, "modifier": MODIFIERS}


@dataclass(frozen=True)
class TmdCode:
    domain: str
    task: str
    modifier: str

    @property
    def code(self) -> str:
        return f"{self.domain}.{self.task}.{self.modifier}"

    @classmethod
    def parse(cls, code: str) -> TmdCode:
        parts = code.split(".")
        if len(parts) != 3:
            raise ValueError(f"TMD code {code!r} is not 'domain.task.modifier'")
        for (axis, table), value in zip(AXES.items(), parts, strict=True):
            if value not in {name for name, _ in table}:
                raise ValueError(f"TMD code {code!r}: unknown {axis} {value!r}")
        return cls(*parts)


def tmd_indices(code: str) -> tuple[int, int, int]:
    """The code as three integers (positions in DOMAINS, TASKS, MODIFIERS)."""
    parsed = TmdCode.parse(code)
    names = [[n for n, _ in table] for table in AXES.values()]
    return (names[0].index(parsed.domain), names[1].index(parsed.task), names[2].index(parsed.modifier))


def label_texts() -> dict[str, list[str]]:
    """The text embedded for each label of each axis (name plus description)."""
    return {axis: [f"{name}: {desc}" for name, desc in table] for axis, table in AXES.items()}


class TmdAssigner:
    """Nearest-description labelling; build once per run (it embeds the 24 label texts)."""

    def __init__(self, encode):
        """``encode(texts) -> (n, d)`` unit-norm float32 vectors (e.g. ``Embedder.encode``)."""
        self._labels = {axis: np.asarray(encode(texts), dtype=np.float32) for axis, texts in label_texts().items()}

    def assign(self, chunk_vectors: np.ndarray) -> list[TmdCode]:
        """One code per row of ``chunk_vectors`` (unit-norm)."""
        if len(chunk_vectors) == 0:
            return []
        picks = {axis: (chunk_vectors @ mat.T).argmax(axis=1) for axis, mat in self._labels.items()}
        return [
            TmdCode(DOMAINS[picks["domain"][i]][0], TASKS[picks["task"][i]][0], MODIFIERS[picks["modifier"][i]][0])
            for i in range(len(chunk_vectors))
        ]


def tmd_distribution(codes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Counts per axis and per full code (for the data-quality report)."""
    out: dict[str, dict[str, int]] = {axis: {name: 0 for name, _ in table} for axis, table in AXES.items()}
    full: dict[str, int] = {}
    for code in codes:
        parsed = TmdCode.parse(code)
        out["domain"][parsed.domain] += 1
        out["task"][parsed.task] += 1
        out["modifier"][parsed.modifier] += 1
        full[code] = full.get(code, 0) + 1
    out["code"] = dict(sorted(full.items(), key=lambda kv: (-kv[1], kv[0])))
    return out
