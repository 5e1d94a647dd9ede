"""The LLM layer: specs, a shared registry under a memory budget, a batched transformers backend
with JSON-schema-constrained decoding, and a pydantic-ai ``Model`` over it.

    from pydantic_ai import Agent
    from liquid_shared import default_model
    agent = Agent(default_model(), output_type=MyModel)
    result = await agent.run("...")
"""

from liquid_shared.models.copy_constraint import (
    NotASpan,
    copy_span_schema,
    extract_span,
    is_span,
    span_model,
    span_of,
)
from liquid_shared.models.errors import ModelLoadError, OverBudgetError, PromptTooLong
from liquid_shared.models.profiles import ROLES, Profile, get_profile
from liquid_shared.models.pydantic_model import (
    LiquidModel,
    LiquidModelSettings,
    default_model,
    model_for_role,
)
from liquid_shared.models.registry import ModelRegistry, get_registry
from liquid_shared.models.spec import LFM2_SAMPLING, ModelSpec

__all__ = [
    "LFM2_SAMPLING",
    "ROLES",
    "LiquidModel",
    "LiquidModelSettings",
    "NotASpan",
    "ModelLoadError",
    "ModelRegistry",
    "ModelSpec",
    "OverBudgetError",
    "Profile",
    "PromptTooLong",
    "copy_span_schema",
    "default_model",
    "extract_span",
    "get_profile",
    "get_registry",
    "is_span",
    "model_for_role",
    "span_model",
    "span_of",
]
