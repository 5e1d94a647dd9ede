"""The copy constraint: decoded text is always a span of its passage (real offline model, grammar on)."""

from __future__ import annotations

import asyncio
import json

import pytest
import xgrammar as xgr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
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


# ------------------------------------------------------------------ properties, real tokenizer
# The grammar as decoding uses it: compiled by ``GrammarCache`` for SmolLM2's tokenizer and fed
# the tokenizer's own token ids of the JSON output, then the end-of-text token. A span is
# accepted exactly when it runs from the start of one of the passage's tokens to the end of the
# same or a later one; anything else (a non-substring, or a substring cut inside a word) is not.

_SPACE = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u3000"])
_WORD = st.text(st.characters(categories=("L", "Nd", "Mn")), min_size=1, max_size=8)
_MARKS = st.text(st.sampled_from(list(".,;:!?-_()[]{}/\\*&%$#@+=<>|~`^'\"") + ["…", "—", "“", "”", "‘", "’", "«", "»", "\x01", "\x7f"]),
                 min_size=1, max_size=4)  # runs of punctuation: "?!", "...", '"(' and so on
_SYMBOL = st.characters(categories=("So", "Sm", "Sc"))  # emoji, arrows, currency
_PASSAGE = st.lists(st.tuples(st.one_of(_WORD, _WORD, _MARKS, _SYMBOL), st.one_of(st.just(""), _SPACE)), min_size=1, max_size=24).map(
    lambda parts: "".join(piece + gap for piece, gap in parts))


@pytest.fixture(scope="module")
def smollm2_grammars(smollm2_dir):
    from transformers import AutoTokenizer

    from liquid_shared.models.grammar import GrammarCache

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    return tok, GrammarCache(tok, vocab_size=len(tok))


def _decodes(tok, compiled, doc: str) -> bool:
    """Whether the grammar lets the model write ``doc`` token by token (the tokenizer's own ids) and stop."""
    ids = tok.encode(doc, add_special_tokens=False)
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == doc  # byte-level BPE: the ids are the text
    matcher = xgr.GrammarMatcher(compiled)
    return all(matcher.accept_token(i) for i in ids) and matcher.accept_token(tok.eos_token_id) and matcher.is_terminated()


def _answer(text: str) -> str:
    return json.dumps({"answer": text}, ensure_ascii=False, separators=(",", ":"))


def test_latin1_letters_pass_the_compiled_grammar(smollm2_grammars):
    # found by the property test below: xgrammar's compiler cache masked out the tokens of these letters
    tok, grammars = smollm2_grammars
    for passage, span in [("Ça va?", "Ça"), ("Die Straße ist lang.", "Straße"), ("« Ç » ß ÿ", "« Ç » ß")]:
        assert _decodes(tok, grammars.for_schema(span_model(passage).model_json_schema()), _answer(span)), span


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(passage=_PASSAGE, data=st.data())
def test_the_grammar_admits_exactly_the_token_boundary_spans(smollm2_grammars, passage: str, data):
    tok, grammars = smollm2_grammars
    marks = passage_tokens(passage)
    assume(marks)
    schema = span_model(passage).model_json_schema()
    compiled, char_level = grammars.for_schema(schema), grammar_for_schema(schema)
    spans = {passage[a:b] for i, (a, _) in enumerate(marks) for _, b in marks[i:]}
    n = len(marks)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=6))
    good = [passage[marks[0][0]:marks[-1][1]]] + [passage[marks[min(i, j)][0]:marks[max(i, j)][1]] for i, j in pairs]
    for span in good:
        assert _decodes(tok, compiled, _answer(span)), span
        assert accepts(char_level, _answer(span)), span
    # candidates that are mostly not spans: cut, extended, edited, joined or unrelated text
    candidates = [passage + passage[-1], "", passage[marks[0][0]:marks[-1][1]] + "\u2603"]
    for span in good[1:]:
        k = data.draw(st.integers(0, len(span)))
        candidates += [span[1:], span[:-1], span[:k] + data.draw(st.sampled_from(["x", " ", "ß", "\n", '"', "é"])) + span[k:],
                       span[:k] + span[k + 1:], span + " " + good[0][:3]]
    candidates.append(data.draw(_PASSAGE))
    rejected = 0
    for text in candidates:
        ok = _decodes(tok, compiled, _answer(text))
        assert ok == (text in spans), (text, passage)
        assert accepts(char_level, _answer(text)) == ok, (text, passage)
        rejected += not ok
    assert rejected >= 2  # the extended passage and the empty string at least
