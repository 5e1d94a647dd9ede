"""``LiquidModel``: a ``pydantic_ai.models.Model`` over the shared registry's local models.

* Text output: free generation.
* Native structured output (the default for ``output_type=SomeModel``): decoding constrained to
  the output JSON schema by xgrammar, so even a 135M model returns JSON that parses and validates.
* Tool calls: the grammar allows ``{"tool": <name>, "arguments": <that tool's schema>}`` for each
  tool, or ``{"final": <output>}``. After ``spec.max_tool_rounds`` rounds of calls in one user turn
  only ``final`` is allowed, so a small model cannot loop on a tool forever.
* Concurrency: every request goes through the registry's micro-batcher, so many agent runs in
  flight at once share one running decode batch. Nothing here blocks the event loop and nothing
  calls ``run_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from pydantic_ai.exceptions import UnsupportedSettingWarning
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings, ToolOrOutput
from pydantic_ai.usage import RequestUsage

from liquid_shared.models import tool_format_lfm2 as lfm2
from liquid_shared.models.backend import GenRequest, escape_control_chars
from liquid_shared.models.chat_format import chat_messages, describe_schema, hoist_defs, to_chat
from liquid_shared.models.grammar import estimate_max_tokens, tighten_schema
from liquid_shared.models.profiles import get_profile
from liquid_shared.models.registry import ModelRegistry, get_registry
from liquid_shared.models.spec import ModelSpec
from liquid_shared.models.tool_format_lfm2 import LFM2

LIQUID_PROFILE = ModelProfile(
    supports_tools=True,
    supports_json_schema_output=True,
    supports_json_object_output=False,
    default_structured_output_mode="native",
)
# A remote engine: the agent picks native output (the server's json_schema response format).
REMOTE_PROFILE = ModelProfile(
    supports_tools=True,
    supports_json_schema_output=True,
    supports_json_object_output=True,
    default_structured_output_mode="native",
)


class LiquidModelSettings(ModelSettings, total=False):
    """``ModelSettings`` plus the settings of our own models (``liquid_`` prefix, pydantic-ai's
    convention for a model's own settings, as ``openai_`` for OpenAI's)."""

    liquid_output_hint: Literal["system", "user"]
    """Where the prose description of the output's fields goes: appended to the system turn
    (default) or to the last user turn. ``"user"`` keeps the system turn equal across requests
    that want different outputs, so the shared-prefix cache can reuse it (the ETL's passage-first
    layout: the passage in the system turn, each stage's task and output fields after it)."""


# Settings pydantic-ai passes that the local backend cannot honour. The guarantee-type ones among
# them (``timeout``, ``extra_body``, ...) are warned about by pydantic-ai's own
# ``Model.unsupported_settings`` mechanism; it ignores tuning knobs silently, so we warn once per
# process for those (``_IGNORED_KNOBS``) instead of dropping them without a word.
_UNSUPPORTED = frozenset({"timeout", "max_retries", "extra_headers", "extra_body", "presence_penalty",
                          "frequency_penalty", "logit_bias", "top_k", "thinking"})
_IGNORED_KNOBS = ("presence_penalty", "frequency_penalty", "logit_bias")
_warned: set[str] = set()


def _warn_ignored_knobs(model_name: str, settings: dict[str, Any]) -> None:
    for name in _IGNORED_KNOBS:
        if settings.get(name) and name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"The `{name}` setting is not supported by the local model {model_name!r} and is ignored "
                "(use ModelSpec.repetition_penalty for a repetition penalty).",
                UnsupportedSettingWarning, stacklevel=4,
            )


def tool_rounds_this_turn(messages: list[ModelMessage]) -> int:
    rounds = 0
    for msg in reversed(messages):
        if isinstance(msg, ModelResponse) and any(getattr(p, "part_kind", "") == "tool-call" for p in msg.parts):
            rounds += 1
        elif isinstance(msg, ModelRequest) and any(getattr(p, "part_kind", "") == "user-prompt" for p in msg.parts):
            break
    return rounds


class LiquidModel(Model):
    """Pydantic AI model for a ``ModelSpec``: a local transformers model from the shared
    ``ModelRegistry`` or, for ``backend="openai"``, a remote engine (``remote.RemoteEngine``, held
    by the same registry), so callers pick a model only through specs and profiles.

    Settings honoured: ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop_sequences``,
    ``tool_choice``; ``parallel_tool_calls=False`` always holds (one call per step). Others warn.
    """

    unsupported_settings: ClassVar[frozenset[str]] = _UNSUPPORTED

    def __init__(self, spec: ModelSpec | str, *, registry: ModelRegistry | None = None,
                 settings: ModelSettings | None = None):
        self.spec = ModelSpec(model=spec) if isinstance(spec, str) else spec
        self._registry = registry
        super().__init__(settings=settings, profile=REMOTE_PROFILE if self.spec.is_remote else LIQUID_PROFILE)

    @property
    def registry(self) -> ModelRegistry:
        return self._registry or get_registry()

    @property
    def model_name(self) -> str:
        return self.spec.model

    @property
    def system(self) -> str:
        return "liquid-remote" if self.spec.is_remote else "liquid-local"

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if self.spec.is_remote:
            engine = await self.registry.hold(self.spec)
            try:
                step = self._remote_json_tool_step(messages, model_settings, model_request_parameters)
                if step is None:
                    return await engine.request(messages, model_settings, model_request_parameters)
                return await self._remote_json_tool_response(engine, step, model_settings)
            finally:
                self.registry.release(self.spec)
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        req, mode = self._gen_request(messages, model_settings, params, await self._tool_format(params))
        result = await self.registry.generate(self.spec, req)
        return ModelResponse(
            parts=self._parse(result.text, mode, params),
            usage=RequestUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens),
            model_name=self.model_name,
            finish_reason="stop" if result.complete else "length",
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Stream a response: text deltas while the row decodes (``streaming``), so
        ``agent.run_stream`` works; a remote spec streams from the server."""
        if self.spec.is_remote:
            step = self._remote_json_tool_step(messages, model_settings, model_request_parameters)
            engine = await self.registry.hold(self.spec)
            try:
                if step is not None:
                    # a JSON-convention tool step is known to be a call or an answer only once complete
                    from liquid_shared.models.streaming import CompletedStreamedResponse

                    response = await self._remote_json_tool_response(engine, step, model_settings)
                    yield CompletedStreamedResponse(model_request_parameters=model_request_parameters, response=response)
                    return
                async with engine.request_stream(messages, model_settings, model_request_parameters, run_context) as s:
                    yield s
            finally:
                self.registry.release(self.spec)
            return
        from liquid_shared.models.streaming import LocalStreamedResponse

        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        req, mode = self._gen_request(messages, model_settings, params, await self._tool_format(params))
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue = asyncio.Queue()
        req.on_token = lambda token: loop.call_soon_threadsafe(tokens.put_nowait, token)
        task = asyncio.create_task(self.registry.generate(self.spec, req))
        registry = self.registry

        def decode(ids: list[int]) -> str:
            backend = registry.get(self.spec)
            return backend.tokenizer.decode(ids, skip_special_tokens=True)

        stream = LocalStreamedResponse(
            model_request_parameters=params, _model_name=self.model_name, _tokens=tokens, _task=task,
            _decode=decode, _parse=lambda text: self._parse(text, mode, params),
            _incremental=mode not in ("tools", "lfm2-tools") and not req.stop_sequences,
            _escape=escape_control_chars if req.json_schema is not None else (lambda text: text),
        )
        try:
            yield stream
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def _remote_json_tool_step(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                               params: ModelRequestParameters,
                               ) -> tuple[list[ModelMessage], ModelRequestParameters, ModelRequestParameters] | None:
        """For ``remote_tool_calls="json_schema"``: a step with tools as the local backend plans it
        (tool policy, JSON convention), sent to the server as a ``json_schema`` response format over
        a plain-turn history (earlier calls as their JSON, results as user turns); None when the
        step has no tools to offer (the ordinary remote request then goes out)."""
        if self.spec.remote_tool_calls != "json_schema" or not (params.function_tools or params.output_tools):
            return None
        from pydantic_ai._instrumentation import get_instructions
        from pydantic_ai._output import OutputObjectDefinition

        model_settings, params = self.prepare_request(model_settings, params)
        plan = self._output_plan(messages, params, (model_settings or {}).get("tool_choice"))
        if plan.mode != "tools":
            return None
        chat = to_chat(messages, get_instructions(messages, params))
        _add_to_system(chat, plan.hint)
        step_params = ModelRequestParameters(
            output_mode="native", allow_text_output=False,
            output_object=OutputObjectDefinition(json_schema=plan.schema, name="step",
                                                 description="a tool call or the final answer"))
        return chat_messages(chat), step_params, params

    async def _remote_json_tool_response(self, engine: Any, step: tuple[list[ModelMessage], ModelRequestParameters,
                                         ModelRequestParameters], model_settings: ModelSettings | None) -> ModelResponse:
        """Send a planned JSON-convention step to the remote engine; its reply as a call or the answer."""
        step_messages, step_params, params = step
        settings = {k: v for k, v in (model_settings or {}).items() if k != "tool_choice"}
        response = await engine.request(step_messages, settings, step_params)
        text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
        return replace(response, parts=self._parse(text, "tools", params))

    async def _tool_format(self, params: ModelRequestParameters) -> str | None:
        """The loaded model's own tool-call format (``backend.tool_format``) when this step has tools."""
        if not params.function_tools and not params.output_tools:
            return None
        backend = await self.registry.hold(self.spec)
        try:
            return backend.tool_format
        finally:
            self.registry.release(self.spec)

    def _gen_request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                     params: ModelRequestParameters, tool_format: str | None = None) -> tuple[GenRequest, str]:
        """The backend request for a prepared pydantic-ai request, and its output mode."""
        from pydantic_ai._instrumentation import get_instructions

        plan = self._output_plan(messages, params, (model_settings or {}).get("tool_choice"), tool_format)
        chat = to_chat(messages, get_instructions(messages, params),
                       tool_format=LFM2 if plan.mode == "lfm2-tools" else None)
        schema = plan.schema
        settings = dict(model_settings or {})
        if plan.hint:
            if settings.get("liquid_output_hint") == "user" and chat and chat[-1]["role"] == "user":
                chat[-1] = {"role": "user", "content": chat[-1]["content"] + "\n\n" + plan.hint}
            else:
                _add_to_system(chat, plan.hint)
        _warn_ignored_knobs(self.model_name, settings)
        spec = self.spec
        max_new = max(int(settings.get("max_tokens") or spec.max_new_tokens), plan.min_tokens)
        if schema is not None:
            schema = tighten_schema(schema, spec.default_max_string_chars, spec.default_max_items)
            # never cut a JSON value short: the budget covers the longest value the grammar allows
            max_new = max(max_new, estimate_max_tokens(schema))
        req = GenRequest(
            messages=chat,
            json_schema=schema,
            ebnf=plan.ebnf,
            tools=plan.template_tools,
            keep_special_tokens=plan.mode == "lfm2-tools",
            max_new_tokens=max_new,
            temperature=float(settings.get("temperature", spec.temperature)),
            min_p=spec.min_p,
            repetition_penalty=spec.repetition_penalty,
            top_p=float(settings.get("top_p", 1.0)),
            seed=settings.get("seed", spec.seed),
            stop_sequences=tuple(settings.get("stop_sequences") or ()),
        )
        return req, plan.mode

    # ------------------------------------------------------------------ plan
    def _output_plan(self, messages: list[ModelMessage], params: ModelRequestParameters, tool_choice: Any = None,
                     tool_format: str | None = None) -> OutputPlan:
        """What this step may output, as a grammar and a prompt hint. Modes: 'text', 'object',
        'tools' (the JSON convention) and 'lfm2-tools' (the template's own format, ``tool_format="lfm2"``).

        ``tool_choice`` (pydantic-ai's setting) is enforced by the grammar: 'none' drops function
        tools, 'required' or a list of names forces a call, ``ToolOrOutput`` restricts the tools.
        """
        output_schema = None
        if params.output_mode in ("native", "prompted") and params.output_object is not None:
            output_schema = dict(params.output_object.json_schema)
        tools = list(params.function_tools)
        output_tools = list(params.output_tools)
        rounds = tool_rounds_this_turn(messages)
        force = False
        if tool_choice == "none":
            tools = []
        elif isinstance(tool_choice, list):
            tools = [t for t in tools if t.name in tool_choice]
            output_tools = [t for t in output_tools if t.name in tool_choice]
            force = True
        elif isinstance(tool_choice, ToolOrOutput):
            tools = [t for t in tools if t.name in tool_choice.function_tools]
        elif tool_choice == "required":
            force = True
        elif tool_choice in (None, "auto") and self.spec.require_tool_first and rounds == 0:
            force = bool(tools)
        if tools and rounds >= self.spec.max_tool_rounds:
            tools, force = [], False
        allow_text = params.allow_text_output
        if force and tools:
            output_schema = None  # a call is required: no final answer on this step
            allow_text = False
            output_tools = [t for t in output_tools if isinstance(tool_choice, list)]
        tools += output_tools
        if not tools:
            if output_schema is None:
                return OutputPlan(None, "text", "")
            hint = "Reply with one JSON object with these fields:\n" + describe_schema(output_schema)
            return OutputPlan(output_schema, "object", hint)
        if tool_format == LFM2 and lfm2.usable_for(tools):
            return self._lfm2_plan(tools, output_schema, allow_text)
        return self._json_convention_plan(tools, output_schema, allow_text)

    def _json_convention_plan(self, tools: list[Any], output_schema: dict[str, Any] | None,
                              allow_text: bool) -> OutputPlan:
        variants, tool_lines = [], []
        bodies, defs = hoist_defs([t.parameters_json_schema for t in tools] + ([output_schema] if output_schema else []))
        for tool, body in zip(tools, bodies, strict=False):
            variants.append({
                "type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": body},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            })
            args = describe_schema(body).replace("\n", "; ") or "no arguments"
            tool_lines.append(f"- {tool.name}: {tool.description or ''} Arguments: {args}")
        if output_schema is not None:
            final = bodies[-1]
            final_hint = 'reply {"final": {...}} with these fields:\n' + describe_schema(final)
        elif allow_text:
            # a final text answer may be as long as a free-text answer: ~3 characters per token
            final = {"type": "string", "maxLength": 3 * self.spec.max_new_tokens}
            final_hint = 'reply {"final": "<your answer>"}.'
        else:
            final = None
            final_hint = ""
        if final is not None:
            variants.append({"type": "object", "properties": {"final": final}, "required": ["final"],
                             "additionalProperties": False})
        schema: dict[str, Any] = {"anyOf": variants}
        if defs:
            schema["$defs"] = defs
        hint = (
            "You can call these tools:\n" + "\n".join(tool_lines)
            + '\nTo call a tool reply {"tool": "<name>", "arguments": {...}}. '
            + ("When you have the information you need, " + final_hint if final_hint else "")
        )
        return OutputPlan(schema, "tools", hint)

    def _lfm2_plan(self, tools: list[Any], output_schema: dict[str, Any] | None, allow_text: bool) -> OutputPlan:
        """The template renders the tools; the grammar allows one call in LFM2's format or the final answer."""
        spec = self.spec
        tight = [(t.name, tighten_schema(t.parameters_json_schema, spec.default_max_string_chars, spec.default_max_items))
                 for t in tools]
        final: dict[str, Any] | str | None = None
        hint = ""
        if output_schema is not None:
            final = tighten_schema(output_schema, spec.default_max_string_chars, spec.default_max_items)
            hint = ("When you have the information you need, reply with one JSON object with these fields:\n"
                    + describe_schema(output_schema))
        elif allow_text:
            final = "text"
        # the token budget covers the longest call the grammar allows (and the final JSON)
        budget = max(estimate_max_tokens(schema) + len(name) // 2 + 8 for name, schema in tight)
        if isinstance(final, dict):
            budget = max(budget, estimate_max_tokens(final))
        return OutputPlan(None, "lfm2-tools", hint, ebnf=lfm2.call_grammar(tight, final),
                          template_tools=lfm2.template_tools(tools), min_tokens=budget)

    @staticmethod
    def _parse(text: str, mode: str, params: ModelRequestParameters) -> list[Any]:
        if mode == "lfm2-tools":
            return _parse_lfm2(text, json_final=params.output_mode in ("native", "prompted")
                               and params.output_object is not None)
        if mode != "tools":
            return [TextPart(content=text)]
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return [TextPart(content=text)]  # cut by max_new_tokens: pydantic-ai will ask again
        if isinstance(obj, dict) and "tool" in obj:
            return [ToolCallPart(tool_name=obj["tool"], args=obj.get("arguments") or {})]
        final = obj.get("final") if isinstance(obj, dict) else obj
        return [TextPart(content=final if isinstance(final, str) else json.dumps(final))]


def _add_to_system(chat: list[dict[str, str]], text: str) -> None:
    """Append ``text`` to the chat's system turn (one is inserted when there is none)."""
    if chat and chat[0]["role"] == "system":
        chat[0] = {"role": "system", "content": chat[0]["content"] + "\n\n" + text}
    else:
        chat.insert(0, {"role": "system", "content": text})


@dataclass(frozen=True)
class OutputPlan:
    """One step's output constraint: a JSON schema or EBNF grammar, the parse mode, a prompt hint,
    and for the template's own tool format the ``tools=`` list it renders."""

    schema: dict[str, Any] | None
    mode: str
    hint: str
    ebnf: str | None = None
    template_tools: list[dict[str, Any]] | None = None
    min_tokens: int = 0


def _parse_lfm2(text: str, json_final: bool = False) -> list[Any]:
    """A step in LFM2's format: calls, or the final answer (text, or the output JSON when ``json_final``).

    Byte-level tokens can put a raw control character inside a string of the call or of the JSON
    (the grammar allows them there, and nowhere else), so those are escaped first (lossless, as for
    JSON output); a free-text answer is left as it is."""
    if not lfm2.looks_like_call(text):
        return [TextPart(content=escape_control_chars(text) if json_final else text)]
    try:
        calls = lfm2.parse_tool_calls(escape_control_chars(text))
    except lfm2.ToolCallFormatError:
        return [TextPart(content=text)]  # cut by max_new_tokens: pydantic-ai will ask again
    return [ToolCallPart(tool_name=c.tool_name, args=c.args) for c in calls]


def model_for_role(role: str, profile: str | None = None, *, registry: ModelRegistry | None = None) -> LiquidModel:
    """The pydantic-ai model of a model role (``profiles.ROLES``) under a named profile (weights shared via the registry)."""
    return LiquidModel(get_profile(profile).spec_for(role), registry=registry)


def default_model(profile: str | None = None) -> LiquidModel:
    """The default pydantic-ai model: ``Agent(default_model(), output_type=MyModel)`` just works."""
    return model_for_role("answer", profile)
