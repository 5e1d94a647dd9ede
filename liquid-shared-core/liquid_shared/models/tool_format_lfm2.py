"""LFM2's own tool-call format: tools rendered by the chat template, calls parsed and decoded under a grammar.

The format, as LiquidAI documents it for LFM2:

* the template puts the tools in the system prompt as a JSON list between ``<|tool_list_start|>``
  and ``<|tool_list_end|>`` (the template's ``tools=`` argument);
* the model writes a call as ``<|tool_call_start|>[name(arg1="value1", arg2=2)]<|tool_call_end|>``,
  a Python-style list of calls with keyword arguments;
* a tool's result goes back as a ``tool`` role message (the template wraps it in
  ``<|tool_response_start|>``/``<|tool_response_end|>``).

``detect_tool_format`` says whether a tokenizer's template is one of these (it renders ``tools=``
and knows LFM2's markers); other templates keep the JSON convention of ``chat_format``.
``call_grammar`` builds the xgrammar grammar for one step: one call of one of the tools, each
argument value JSON under that argument's (tightened) schema, or the final answer (JSON under
the output schema, or free text that does not start like a call). ``parse_tool_calls`` reads the
model's text back into name and typed arguments, with an error naming the text when it is not in
the format.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

import xgrammar as xgr

LFM2 = "lfm2"
CALL_START, CALL_END = "<|tool_call_start|>", "<|tool_call_end|>"
LIST_START = "<|tool_list_start|>"
MARKERS = (CALL_START, CALL_END)
_PROBE_TOOL = {"type": "function", "function": {"name": "liquid_probe_tool", "description": "probe",
                                                "parameters": {"type": "object", "properties": {}}}}
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class ToolCallFormatError(ValueError):
    """Text that should hold LFM2 tool calls is not in the format ``[name(arg=value, ...)]``."""


@dataclass(frozen=True)
class ParsedCall:
    tool_name: str
    args: dict[str, Any]


def detect_tool_format(tokenizer: Any) -> str | None:
    """``"lfm2"`` when the tokenizer's chat template renders ``tools=`` and uses LFM2's tool markers;
    None otherwise (the JSON convention is used)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or (CALL_START not in template and LIST_START not in template):
        return None
    probe = [{"role": "user", "content": "hi"}]
    try:
        with_tools = tokenizer.apply_chat_template(probe, tools=[_PROBE_TOOL], tokenize=False)
        without = tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # a template that fails on tools= does not accept them
        return None
    return LFM2 if with_tools != without and "liquid_probe_tool" in with_tools else None


def usable_for(tools: list[Any]) -> bool:
    """Python-style calls need tool and argument names that are identifiers."""
    return all(t.name.isidentifier() and all(k.isidentifier() for k in t.parameters_json_schema.get("properties", {}))
               for t in tools)


def template_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """pydantic-ai tool definitions as the ``tools=`` list a chat template takes."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.parameters_json_schema}} for t in tools]


def render_calls(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Calls in the model's format (argument values as JSON, strings double-quoted as documented)."""
    inner = ", ".join(f"{name}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) + ")"
                      for name, args in calls)
    return f"{CALL_START}[{inner}]{CALL_END}"


def looks_like_call(text: str) -> bool:
    text = text.lstrip()
    return text.startswith(CALL_START) or text.startswith("[")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:197] + "...")


def _literal(node: ast.AST, where: str, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, where, text)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, where, text) for e in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, where, text): _literal(v, where, text) for k, v in zip(node.keys, node.values, strict=True)}
    raise ToolCallFormatError(f"tool call {_shown(text)}: {where} is not a literal value "
                              f"({ast.unparse(node)[:60]!r}); use strings, numbers, booleans, lists or objects")


def parse_tool_calls(text: str) -> list[ParsedCall]:
    """The calls in ``<|tool_call_start|>[name(arg=value, ...), ...]<|tool_call_end|>`` (the markers
    may be missing where a tokenizer dropped them). Raises ``ToolCallFormatError`` naming the text."""
    body = text.strip()
    if body.startswith(CALL_START):
        body = body[len(CALL_START):]
    if body.endswith(CALL_END):
        body = body[: -len(CALL_END)]
    body = body.strip()
    try:
        node = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise ToolCallFormatError(f"tool call {_shown(text)} is not in LFM2's format "
                                  f"[name(arg=value, ...)]: {exc.msg} (column {exc.offset})") from None
    except ValueError as exc:  # e.g. a null byte (Python 3.11 raises ValueError for it)
        raise ToolCallFormatError(f"tool call {_shown(text)} is not in LFM2's format: {exc}") from None
    calls = node.elts if isinstance(node, ast.List) else [node]
    if not calls:
        raise ToolCallFormatError(f"tool call {_shown(text)} holds an empty list of calls")
    parsed = []
    for call in calls:
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ToolCallFormatError(f"tool call {_shown(text)}: {ast.unparse(call)[:60]!r} is not a call "
                                      "of a tool by its name, like name(arg=value)")
        name = call.func.id
        if call.args:
            raise ToolCallFormatError(f"tool call {_shown(text)}: `{name}` got positional arguments; "
                                      "LFM2 calls name every argument (arg=value)")
        args = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise ToolCallFormatError(f"tool call {_shown(text)}: `{name}` unpacks **arguments")
            args[kw.arg] = _literal(kw.value, f"argument `{kw.arg}` of `{name}`", text)
        parsed.append(ParsedCall(tool_name=name, args=args))
    return parsed


# ------------------------------------------------------------------ grammar
def _lit(text: str) -> xgr.Grammar:
    return xgr.Grammar.from_ebnf(f"root ::= {json.dumps(text)}")


_EMPTY = 'root ::= ""'
# a final text answer: anything that does not start like a call ("<" of the marker, or "[")
_FREE_TEXT = "root ::= [^<[] [^]*"


def _json_value(schema: dict[str, Any], defs: dict[str, Any]) -> xgr.Grammar:
    if defs:
        schema = {**schema, "$defs": defs}
    return xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)


def _arguments(params: dict[str, Any]) -> xgr.Grammar:
    """``k1=v1, k2=v2`` in the schema's property order; required ones always, optional ones may be left out."""
    props = list(params.get("properties", {}).items())
    required = set(params.get("required", []))
    defs = params.get("$defs", {})
    empty = xgr.Grammar.from_ebnf(_EMPTY)
    # after[i]: arguments i.. when one was already written (each optional one may be skipped);
    # first[i]: arguments i.. when none was written yet (no leading comma). O(n^2) in size, not 2^n.
    after: list[xgr.Grammar] = [empty] * (len(props) + 1)
    first: list[xgr.Grammar] = [empty] * (len(props) + 1)
    for i in range(len(props) - 1, -1, -1):
        key, schema = props[i]
        value = _json_value(schema, defs)
        later = xgr.Grammar.concat(_lit(f", {key}="), value)
        after[i] = xgr.Grammar.concat(later if key in required else xgr.Grammar.union(later, empty), after[i + 1])
        present = xgr.Grammar.concat(_lit(f"{key}="), value, after[i + 1])
        first[i] = present if key in required else xgr.Grammar.union(present, first[i + 1])
    return first[0]


def call_grammar(tools: list[tuple[str, dict[str, Any]]], final: dict[str, Any] | str | None) -> str:
    """EBNF for one step: a call of one of ``tools`` (name, tightened parameter schema), or the final
    answer: ``final`` a JSON schema (native output), ``"text"`` (free text), None (a call is required)."""
    calls = [xgr.Grammar.concat(_lit(f"{name}("), _arguments(params), _lit(")")) for name, params in tools]
    call = calls[0] if len(calls) == 1 else xgr.Grammar.union(*calls)
    step = xgr.Grammar.concat(_lit(f"{CALL_START}["), call, _lit(f"]{CALL_END}"))
    if final == "text":
        step = xgr.Grammar.union(step, xgr.Grammar.from_ebnf(_FREE_TEXT))
    elif isinstance(final, dict):
        step = xgr.Grammar.union(step, _json_value(final, {}))
    return str(step)
