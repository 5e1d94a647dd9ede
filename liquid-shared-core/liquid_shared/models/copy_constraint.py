"""The copy constraint: decode text that can only be a contiguous span of a given passage.

A string field of a structured output whose JSON schema carries ``"x-liquid-copy-from": passage``
is decoded under a grammar that admits exactly the passage's spans (from the start of one of its
tokens to the end of a later or the same token, with the passage's own spacing in between), so a
small model cannot paraphrase, invent or misspell an extractive answer: the output is a
substring of the passage by construction (Alberti et al. 2019 and PAQ use extractive readers for
the same reason; we get the property from the decoder instead of a span-prediction head).

Tokens here are words (``\\w+``) and single punctuation marks; the grammar is linear in their
number::

    s_i   ::= w_i (g_i s_{i+1})?        # w_i: token i, g_i: the passage text between tokens i, i+1
    span  ::= s_0 | s_1 | ... | s_{n-1}

Use it through a type or a model class, per request::

    from pydantic_ai import Agent
    from liquid_shared.models import default_model, span_model, is_span

    passage = "The Normans conquered England in 1066 under William."
    agent = Agent(default_model(), instructions="Answer with a span copied from the passage.")
    out = (await agent.run(f"{passage}\\n\\nWhen did the Normans conquer England?",
                           output_type=span_model(passage))).output
    assert is_span(out.answer, passage)          # e.g. "1066"

or ``await extract_span(default_model(), question, passage)`` for the answer text alone.
``span_of(passage)`` is the field type (``list[span_of(chunk)]`` for keywords that must occur in
the chunk). Objects, arrays and ``anyOf`` that contain a copy field get their grammar built here
(field by field, every property written, in schema order); everything else inside them is
compiled by xgrammar from its JSON schema, so the rest of a structured output keeps its own
constraints.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Annotated, Any

import xgrammar as xgr
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, create_model

COPY_KEY = "x-liquid-copy-from"

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class NotASpan(ValueError):
    """A value that should have been copied from the passage is not a span of it."""


# ------------------------------------------------------------------------ the public helpers
def passage_tokens(passage: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the passage's tokens: words and punctuation marks."""
    return [m.span() for m in _TOKEN.finditer(passage)]


def is_span(text: str, passage: str) -> bool:
    """True when ``text`` is a non-empty contiguous substring of ``passage``."""
    return bool(text) and text in passage


def copy_span_schema(passage: str, description: str | None = None) -> dict[str, Any]:
    """The JSON schema of a string that must be a span of ``passage``."""
    if not passage_tokens(passage):
        raise ValueError("copy constraint: the passage has no words to copy from")
    schema: dict[str, Any] = {"type": "string", COPY_KEY: passage, "maxLength": len(passage)}
    if description:
        schema["description"] = description
    return schema


def span_of(passage: str, description: str | None = None) -> Any:
    """A pydantic field type: a string decoded under the copy constraint and validated as a span."""

    def _check(value: str) -> str:
        if not is_span(value, passage):
            raise NotASpan(f"{value!r} is not a span of the passage")
        return value

    return Annotated[str, WithJsonSchema(copy_span_schema(passage, description)), AfterValidator(_check)]


def span_model(passage: str, field: str = "answer", description: str = "a span copied from the passage",
               name: str = "Span") -> type[BaseModel]:
    """A one-field output model (``{field: span of passage}``) for ``Agent.run(..., output_type=...)``."""
    return create_model(name, **{field: (span_of(passage, description), Field(...))})


async def extract_span(model: Any, question: str, passage: str, *, instructions: str | None = None,
                       **run_kwargs: Any) -> str:
    """Ask ``model`` (a ``LiquidModel``) ``question`` about ``passage``; the answer is a span of it.

    >>> # answer = await extract_span(default_model(), "Who led the Normans?", passage)
    """
    from pydantic_ai import Agent

    agent = Agent(model, instructions=instructions or (
        "Answer the question with the shortest span copied word for word from the passage."))
    prompt = f"Passage: {passage}\n\nQuestion: {question}"
    result = await agent.run(prompt, output_type=span_model(passage), **run_kwargs)
    return result.output.answer


# ------------------------------------------------------------------------------ the grammar
def has_copy_constraint(schema: Any) -> bool:
    """Whether a JSON schema carries a copy-constrained string anywhere (``$defs`` included)."""
    if isinstance(schema, dict):
        return COPY_KEY in schema or any(has_copy_constraint(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_copy_constraint(v) for v in schema)
    return False


def _literal(text: str) -> str:
    """An EBNF string literal matching ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_inner(text: str) -> str:
    """``text`` as it appears between the quotes of a JSON string."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def span_ebnf(passage: str) -> str:
    """EBNF (root rule ``root``) of a JSON string whose content is a span of ``passage``."""
    spans = passage_tokens(passage)
    if not spans:
        raise ValueError("copy constraint: the passage has no words to copy from")
    lines = []
    n = len(spans)
    for i, (start, end) in enumerate(spans):
        word = _literal(_json_inner(passage[start:end]))
        if i + 1 < n:
            gap = _json_inner(passage[end:spans[i + 1][0]])
            nxt = (_literal(gap) + " " if gap else "") + f"s{i + 1}"
            lines.append(f"s{i} ::= {word} ({nxt})?")
        else:
            lines.append(f"s{i} ::= {word}")
    lines.append("span ::= " + " | ".join(f"s{i}" for i in range(n)))
    lines.append('root ::= "\\"" span "\\""')
    return "\n".join(lines)


@lru_cache(maxsize=256)
def _span_grammar(passage: str) -> xgr.Grammar:
    return xgr.Grammar.from_ebnf(span_ebnf(passage))


@lru_cache(maxsize=256)
def _span_list_grammar(passage: str, low: int, high: int) -> xgr.Grammar:
    """A JSON array of ``low``..``high`` spans of ``passage``."""
    rules = span_ebnf(passage).replace("root ::=", "item ::=")
    if high == 0:
        body = '"[]"'
    elif low == 0:
        body = f'"[" (item ("," item){{0,{high - 1}}})? "]"'
    else:
        body = f'"[" item ("," item){{{low - 1},{high - 1}}} "]"'
    return xgr.Grammar.from_ebnf(rules + "\nroot ::= " + body)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root.get("$defs", {})[ref.split("/")[-1]], root)
    return schema


def _lit(text: str) -> xgr.Grammar:
    return xgr.Grammar.from_ebnf(f"root ::= {_literal(text)}")


def _plain(schema: dict[str, Any], root: dict[str, Any]) -> xgr.Grammar:
    sub = dict(schema)
    if "$defs" in root and "$defs" not in sub:
        sub["$defs"] = root["$defs"]
    return xgr.Grammar.from_json_schema(json.dumps(sub), any_whitespace=False, strict_mode=True)


def _repeat(item: xgr.Grammar, low: int, high: int) -> xgr.Grammar:
    """``[`` item (``,`` item){low-1..high-1} ``]`` with explicit bounds (high is finite)."""
    comma = _lit(",")
    options = []
    for count in range(low, high + 1):
        if count == 0:
            options.append(_lit("[]"))
            continue
        parts = [_lit("["), item]
        for _ in range(count - 1):
            parts += [comma, item]
        parts.append(_lit("]"))
        options.append(xgr.Grammar.concat(*parts))
    return options[0] if len(options) == 1 else xgr.Grammar.union(*options)


def grammar_for_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> xgr.Grammar:
    """The xgrammar grammar of compact JSON under ``schema``, with copy-constrained strings."""
    root = root or schema
    schema = _resolve(schema, root)
    if not has_copy_constraint(schema):
        return _plain(schema, root)
    if COPY_KEY in schema:
        return _span_grammar(schema[COPY_KEY])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return xgr.Grammar.union(*(grammar_for_schema(s, root) for s in schema[key]))
    if schema.get("type") == "array":
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 8)))
        items = _resolve(schema.get("items", {}), root)
        if COPY_KEY in items:  # one copy of the span rules, repeated by the grammar
            return _span_list_grammar(items[COPY_KEY], low, high)
        return _repeat(grammar_for_schema(items, root), low, high)
    props = schema.get("properties")
    if props:
        parts: list[xgr.Grammar] = []
        for k, (name, sub) in enumerate(props.items()):
            parts.append(_lit(("{" if k == 0 else ",") + json.dumps(name) + ":"))
            parts.append(grammar_for_schema(sub, root))
        parts.append(_lit("}"))
        return xgr.Grammar.concat(*parts)
    raise ValueError(f"copy constraint: cannot build a grammar for schema {json.dumps(schema)[:200]}")


class CopyGrammarCache:
    """Compiled copy grammars, least recently used first out: every passage has its own grammar,
    so an ETL run over thousands of chunks must not keep them all.

    They are compiled by a compiler of their own with xgrammar's cache off: with it on, xgrammar
    0.2.9 compiles a ``Grammar`` object into a matcher that refuses spans holding some Latin-1
    letters ("Ça", "Straße": the token of "Ç" or "ß" is masked out), although the same grammar
    compiled uncached, or the character-level check, admits them (found by the property test in
    ``tests/shared/test_copy_constraint.py``). This cache is the one that counts anyway.
    """

    def __init__(self, tokenizer_info: xgr.TokenizerInfo, size: int = 64):
        self.size = size
        self._compiler = xgr.GrammarCompiler(tokenizer_info, cache_enabled=False)
        self._items: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, schema: dict[str, Any]) -> xgr.CompiledGrammar:
        key = json.dumps(schema)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        compiled = self._compiler.compile_grammar(grammar_for_schema(schema))
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled
