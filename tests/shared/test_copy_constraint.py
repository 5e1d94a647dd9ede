"""The copy constraint: decoded text is always a span of its passage (real offline model, grammar on)."""

from __future__ import annotations

import asyncio

import pytest
import xgrammar as xgr
from pydantic import BaseModel, ValidationError
from pydantic_ai import Agent

from liquid_shared.models import copy_span_schema, default_model, is_span, span_model, span_of
from liquid_shared.models.copy_constraint import grammar_for_schema, passage_tokens

accepts = xgr.testing._is_grammar_accept_string

PASSAGES = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
    'Rollo, their leader, agreed to swear fealty to King Charles III of West Francia ("the Simple") in 911.',
    "Southern California is home to Los Angeles, the second most populous city in the United States.",
    "Sky UK Limited is a British broadcaster owned by Comcast; it has about 12.5 million customers.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.\nIt releases oxygen.",
    "In 1905 Albert Einstein published four papers, including one on special relativity.",
    "The Amazon River carries more water than the next seven largest rivers combined.",
    "Ada Lovelace wrote notes on Charles Babbage's Analytical Engine in 1843.",
    "Mount Everest is 8,849 metres high and lies on the border of Nepal and China.",
    "The treaty was signed at Versailles on 28 June 1919, ending the war with Germany.",
    "Marie Curie, born in Warsaw, won Nobel prizes in physics (1903) and chemistry (1911).",
    "A prime number has exactly two divisors: 1 and itself; 2 is the only even prime.",
]
QUESTIONS = ["Who or what is this about?", "What number or date is mentioned?"]


def test_grammar_admits_exactly_the_spans():
    passage = 'He said "stop" at 3.5 km,\nthen left.'
    g = grammar_for_schema({"type": "object", "properties": {"a": copy_span_schema(passage)}})
    for good in ["stop", '\\"stop\\" at 3.5', "km,\\nthen left.", "He"]:
        assert accepts(g, '{"a":"' + good + '"}'), good
    for bad in ["sto", "stop at", "He said stop", "then  left", "", "left. He"]:
        assert not accepts(g, '{"a":"' + bad + '"}'), bad


def test_span_type_validates_and_other_fields_keep_their_schema():
    passage = "Rollo led the Norse raiders."

    class Out(BaseModel):
        question: str
        answer: span_of(passage)
        keywords: list[span_of(passage)]

    assert Out(question="q", answer="Norse raiders", keywords=["Rollo"]).answer == "Norse raiders"
    with pytest.raises(ValidationError):
        Out(question="q", answer="Viking raiders", keywords=[])
    schema = Out.model_json_schema()
    g = grammar_for_schema(schema)
    assert accepts(g, '{"question":"Who?","answer":"Rollo","keywords":["Norse","raiders."]}')
    assert not accepts(g, '{"question":1,"answer":"Rollo","keywords":[]}')  # question stays a string
    assert not accepts(g, '{"question":"Who?","answer":"Rollo","keywords":["Vikings"]}')


def test_empty_passage_is_a_clear_error():
    with pytest.raises(ValueError, match="no words"):
        copy_span_schema("  \n ")
    assert len(passage_tokens("U.S. 3,5")) == 7  # U . S . 3 , 5


@pytest.mark.slow
async def test_real_model_outputs_are_always_spans():
    model = default_model()
    agent = Agent(model, instructions="Answer with a short span copied word for word from the passage.")

    async def ask(passage: str, question: str) -> str:
        out = await agent.run(f"Passage: {passage}\n\nQuestion: {question}", output_type=span_model(passage),
                              model_settings={"max_tokens": 24})
        return out.output.answer

    jobs = [(p, QUESTIONS[i % 2]) for i, p in enumerate(PASSAGES)]
    answers = await asyncio.gather(*(ask(p, q) for p, q in jobs))
    assert len(answers) == len(jobs)
    for (p, _), a in zip(jobs, answers, strict=True):
        assert is_span(a, p), (a, p)
    # and not trivially the whole passage every time
    assert sum(len(a) < len(p) for (p, _), a in zip(jobs, answers, strict=True)) >= len(jobs) // 2
