"""``POST /ask`` with ``"stream": true`` (server-sent events) over real HTTP (uvicorn on 127.0.0.1).

The slow test streams from the real offline model (SmolLM2, greedy) and compares the stream with
the plain response. The others test the service's own behaviour around a stream (event order,
limits, errors) with a scripted pydantic-ai ``FunctionModel`` that streams its JSON piece by piece.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from rag_runtime import create_app
from rag_runtime.answer_events import DraftAnswerText, partial_answer_field
from rag_runtime.service_limits import ServiceLimits

from .conftest import LiveServer

KEY = "stream-key"
QUESTION = "Why should pastry rest in the fridge?"
ANSWER = "So the butter stays cold."


def read_events(response: httpx.Response) -> list[tuple[str, dict, float]]:
    """Parse a ``text/event-stream`` body into (event, data, arrival time) triples."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data)), time.monotonic()))
            name, data = None, []
    return events


def stream_ask(client: httpx.Client, body: dict) -> tuple[httpx.Response, list[tuple[str, dict, float]]]:
    with client.stream("POST", "/ask", json={**body, "stream": True}) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        return r, read_events(r)


def scripted_model(answer_json: str | None = None, piece_delay_s: float = 0.0) -> FunctionModel:
    """Streams ``answer_json`` (default: a valid answer citing the first offered chunk) in pieces of
    four characters, ``piece_delay_s`` apart; ``answer_json="!"`` streams text that never validates."""

    def body(info: AgentInfo) -> str:
        if answer_json is not None:
            return answer_json
        cite = info.model_request_parameters.output_object.json_schema["properties"]["citations"]["items"]["enum"][0]
        return json.dumps({"answer": ANSWER, "citations": [cite]})

    async def whole(messages, info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(body(info))])

    async def pieces(messages, info: AgentInfo):
        text = body(info)
        for i in range(0, len(text), 4):
            await asyncio.sleep(piece_delay_s)
            yield text[i:i + 4]

    return FunctionModel(whole, stream_function=pieces,
                         profile={"supports_json_schema_output": True, "default_structured_output_mode": "native"})


def _server(rag_index, model, **kwargs) -> LiveServer:
    return LiveServer(create_app(index=rag_index, api_key=KEY, model=model, **kwargs))


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=600)


def test_partial_json_gives_the_answer_text_as_it_grows():
    assert partial_answer_field('{"answer":"So the bu') == "So the bu"
    assert partial_answer_field('{"answer":"a\\u00') == "a"  # cut inside an escape: the text before it
    assert partial_answer_field('{"citations":["x"]') is None
    draft = DraftAnswerText()
    pieces = [draft.feed(p) for p in ['{"ans', 'wer":" So', ' the \\"but', 'ter\\""', ',"citations":["a"]}']]
    assert pieces == ["", "So", ' the "but', 'ter"', ""]
    assert "".join(pieces) == json.loads(draft.raw)["answer"].lstrip()


def test_stream_events_come_in_order_and_the_answer_equals_the_plain_response(rag_index):
    with _server(rag_index, scripted_model(piece_delay_s=0.02)) as server, _client(server) as c:
        r, events = stream_ask(c, {"question": QUESTION, "k": 3})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        names = [e[0] for e in events]
        assert names[0] == "context" and names[-1] == "answer" and set(names[1:-1]) == {"delta"}
        assert len(names) > 4  # the answer text came in several pieces
        context, final = events[0][1], events[-1][1]
        assert context["question"] == QUESTION and len(context["hits"]) >= 1
        assert context["hits"][0]["id"].startswith("cooking-")
        assert "".join(e[1]["text"] for e in events if e[0] == "delta") == final["answer"] == ANSWER
        plain = c.post("/ask", json={"question": QUESTION, "k": 3})
        assert plain.status_code == 200
        expected = plain.json()
        expected.pop("took_ms")
        assert final.pop("took_ms") > 0
        # token counts are the transport's (a streamed and a plain response of the scripted model differ)
        assert final.pop("usage")["requests"] == expected.pop("usage")["requests"] == 1
        assert final == expected


def test_a_refused_question_streams_empty_context_then_the_refusal(rag_index):
    with _server(rag_index, scripted_model()) as server, _client(server) as c:
        r, events = stream_ask(c, {"question": "What is the capital of Mongolia?"})
        assert [e[0] for e in events] == ["context", "answer"]
        assert events[0][1]["hits"] == [] and events[1][1]["refused"] is True
        metrics = c.get("/metrics").text
        assert "rag_ask_refusals_total 1.0" in metrics


def test_a_model_that_never_validates_streams_resets_then_a_502_error_event(rag_index):
    bad = json.dumps({"answer": "An answer citing nothing offered.", "citations": ["no-such-chunk"]})
    with _server(rag_index, scripted_model(bad)) as server, _client(server) as c:
        r, events = stream_ask(c, {"question": QUESTION})
        names = [e[0] for e in events]
        assert r.status_code == 200 and names[0] == "context" and names[-1] == "error"
        assert names.count("reset") == 2  # the agent's 2 retries, each a new draft
        assert "answer" not in names
        error = events[-1][1]
        assert error["status"] == 502 and "the answer model failed on" in error["detail"]
        # every draft's text was streamed between the resets
        drafts = "".join(e[1]["text"] if e[0] == "delta" else "|" for e in events if e[0] in ("delta", "reset"))
        assert drafts.split("|") == ["An answer citing nothing offered."] * 3


def test_a_stream_over_the_request_timeout_ends_with_a_504_event_and_frees_its_slot(rag_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0, request_timeout_s=1.0)
    with _server(rag_index, scripted_model(piece_delay_s=0.2), limits=limits) as server, _client(server) as c:
        start = time.monotonic()
        r, events = stream_ask(c, {"question": QUESTION})
        assert time.monotonic() - start < 5
        names = [e[0] for e in events]
        assert names[0] == "context" and "delta" in names and names[-1] == "error"
        assert events[-1][1] == {"status": 504, "detail": "request timed out after 1 s"}
        # the slot was released: the next request is served (and times out the same way), not shed
        r, events = stream_ask(c, {"question": QUESTION})
        assert r.status_code == 200 and events[-1][0] == "error"


def test_an_open_stream_holds_its_concurrency_slot_and_rate_limits_apply(rag_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0, rate_per_s=0.01, burst=2)
    with _server(rag_index, scripted_model(piece_delay_s=0.1), limits=limits) as server, _client(server) as c:
        with c.stream("POST", "/ask", json={"question": QUESTION, "stream": True}) as first:
            lines = first.iter_lines()
            assert next(lines) == "event: context"  # the stream is open and answering
            second = c.post("/ask", json={"question": QUESTION, "stream": True})
            assert second.status_code == 503 and "busy: 1 answers already in progress" in second.json()["detail"]
            rest = list(lines)
        assert "event: answer" in rest
        # the 503 was shed before the rate limit took a token: one token of the burst of 2 is left
        r, events = stream_ask(c, {"question": QUESTION})
        assert r.status_code == 200 and events[-1][0] == "answer"
        r = c.post("/ask", json={"question": QUESTION, "stream": True})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 1


def test_stream_must_be_a_boolean(rag_index):
    with _server(rag_index, scripted_model()) as server, _client(server) as c:
        r = c.post("/ask", json={"question": QUESTION, "stream": "yes"})
        assert r.status_code == 422 and "stream: Input should be a valid boolean" in r.json()["detail"]


@pytest.mark.slow
def test_the_real_model_streams_deltas_and_its_final_answer_equals_the_plain_response(rag_index):
    from liquid_shared.models import LiquidModel, ModelRegistry, ModelSpec
    from liquid_shared.offline import SMOLLM2_ID

    model = LiquidModel(ModelSpec(model=SMOLLM2_ID, temperature=0.0), registry=ModelRegistry())
    with _server(rag_index, model) as server, _client(server) as c:
        r, events = stream_ask(c, {"question": QUESTION, "k": 3})
        names = [e[0] for e in events]
        assert r.status_code == 200 and names[0] == "context" and names[-1] == "answer", names
        assert "reset" not in names and "error" not in names
        deltas = [e for e in events if e[0] == "delta"]
        assert len(deltas) > 2
        assert deltas[-1][2] - deltas[0][2] > 0.05  # the pieces arrived while the model decoded, not at once
        final = events[-1][1]
        assert final["refused"] is False and final["citations"]
        assert {h["id"] for h in events[0][1]["hits"]} >= set(final["citations"])
        assert "".join(e[1]["text"] for e in deltas).strip() == final["answer"]
        plain = c.post("/ask", json={"question": QUESTION, "k": 3})
        assert plain.status_code == 200
        expected = plain.json()
        expected.pop("took_ms")
        final.pop("took_ms")
        assert final == expected


def test_a_client_that_disconnects_mid_stream_cancels_its_answer_and_frees_the_slot(rag_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0, request_timeout_s=None)
    # 10 s of pieces: only a cancelled answer frees the slot within the wait below
    with _server(rag_index, scripted_model(piece_delay_s=0.5), limits=limits) as server, _client(server) as c:
        with c.stream("POST", "/ask", json={"question": QUESTION, "stream": True}) as first:
            lines = first.iter_lines()
            assert next(lines) == "event: context"
        # the connection is closed; the slot comes back once the server notices, well before 10 s
        deadline, status = time.monotonic() + 5, 503
        while status == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            status = c.post("/ask", json={"question": "What is the capital of Mongolia?"}).status_code
        assert status == 200
