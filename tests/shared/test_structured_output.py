"""The default offline model returns valid structured output, inside a running event loop."""

from __future__ import annotations

import asyncio
from enum import Enum

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from liquid_shared import default_model, get_registry


class Sentiment(str, Enum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"


class Entity(BaseModel):
    name: str = Field(max_length=40, description="Name as written in the text")
    kind: str = Field(max_length=20, description="person, place, organisation or thing")


class Analysis(BaseModel):
    topic: str = Field(max_length=60, description="Main topic in a few words")
    sentiment: Sentiment
    entities: list[Entity] = Field(max_length=3)
    keywords: list[str] = Field(max_length=4)
    confidence: float = Field(ge=0, le=1)


PROMPTS = [
    "The Eiffel Tower in Paris drew record crowds this summer.",
    "Marie Curie won two Nobel prizes for her work on radioactivity.",
    "The new bridge in Lisbon is delayed again and costs keep rising.",
    "Apple released a smaller phone with a better battery.",
    "Heavy rain flooded several streets in Mumbai on Monday.",
    "The Amazon rainforest produces a large share of the world's oxygen.",
    "Ada Lovelace wrote the first published computer program.",
    "The local bakery on Main Street won a national bread award.",
    "Tokyo will host a robotics fair with exhibitors from 40 countries.",
    "A volcano erupted in Iceland, disrupting flights across Europe.",
    "The football club Ajax signed a young striker from Ghana.",
    "Scientists at CERN measured the mass of the W boson precisely.",
    "The library in Alexandria was one of the largest of the ancient world.",
    "A heatwave in Spain pushed temperatures above 44 degrees.",
    "Toyota plans to build a battery factory in North Carolina.",
    "The Great Barrier Reef suffered another mass bleaching event.",
    "Beethoven composed his ninth symphony while almost deaf.",
    "The city council of Oslo approved a new tram line.",
    "Researchers in Kenya developed a drought-resistant maize variety.",
    "The Louvre reopened its Egyptian wing after renovation.",
]


@pytest.mark.slow
async def test_twenty_of_twenty_structured_outputs_in_running_loop():
    assert asyncio.get_running_loop().is_running()
    model = default_model()
    agent = Agent(model, output_type=Analysis, instructions="Analyse the text.")
    results = await asyncio.gather(*(agent.run(p) for p in PROMPTS), return_exceptions=True)
    failures = [(p, r) for p, r in zip(PROMPTS, results, strict=True) if isinstance(r, BaseException)]
    assert not failures, failures
    assert len({p for p in PROMPTS}) == 20
    for r in results:
        out = r.output
        assert isinstance(out, Analysis)
        assert isinstance(out.sentiment, Sentiment)
        assert all(isinstance(e, Entity) for e in out.entities)
        assert 0 <= out.confidence <= 1
    # concurrent runs were admitted together into a shared running batch
    assert max(get_registry().batch_sizes(model.spec)) > 1


@pytest.mark.slow
async def test_plain_text_output():
    agent = Agent(default_model())
    result = await agent.run("Write one short sentence about the sea.")
    assert isinstance(result.output, str) and result.output.strip()
    assert result.usage.output_tokens > 0


def test_the_output_hint_goes_to_the_last_user_turn_when_asked():
    """``liquid_output_hint="user"`` keeps the system turn free of the output's fields, so requests
    for different outputs share it as a cached prefix (the ETL's passage-first layout); by
    default the fields are described in the system turn."""
    from pydantic_ai._output import OutputObjectDefinition
    from pydantic_ai.messages import ModelRequest, SystemPromptPart, UserPromptPart
    from pydantic_ai.models import ModelRequestParameters

    from liquid_shared.models import LiquidModel, ModelSpec

    model = LiquidModel(ModelSpec(model="unused-name"))
    params = ModelRequestParameters(output_mode="native", allow_text_output=False, output_object=OutputObjectDefinition(
        json_schema=Entity.model_json_schema(), name="Entity"))
    history = [ModelRequest(parts=[SystemPromptPart(content="A passage."), UserPromptPart(content="Name it.")])]
    default, _ = model._gen_request(history, {}, params)
    assert default.messages[0]["content"].startswith("A passage.") and "- kind (string)" in default.messages[0]["content"]
    assert default.messages[1]["content"] == "Name it."
    moved, _ = model._gen_request(history, {"liquid_output_hint": "user"}, params)
    assert moved.messages[0] == {"role": "system", "content": "A passage."}
    assert moved.messages[1]["content"].startswith("Name it.\n\n") and "- kind (string)" in moved.messages[1]["content"]
    assert moved.json_schema == default.json_schema  # the same grammar either way
