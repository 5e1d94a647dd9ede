"""The OpenAI-compatible chat API called with the official ``openai`` client against a real ``serve``
app (uvicorn on 127.0.0.1), on the index built from the tiny BEIR folder.

The answers come from a scripted model (``scripted_answers``), except in the last test (the
offline model): what is tested is the API around the answer.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from rag_runtime import RagIndex, create_app
from rag_runtime.service_limits import ServiceLimits

from .conftest import BEIR_DOCS, LiveServer
from .scripted_answers import GENERATIVE_ANSWER, scripted_answers

KEY = "chat-key"
QUESTION = "How often does a sourdough starter need feeding?"


@pytest.fixture(scope="module")
def beir_index(beir_index_dir) -> RagIndex:
    return RagIndex.load(beir_index_dir)


@pytest.fixture(scope="module")
def server(beir_index):
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=scripted_answers())) as live:
        yield live


def client_for(server: LiveServer, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def ask(question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": question}]


def test_models_list_the_styles_the_server_allows(server, beir_index):
    assert [m.id for m in client_for(server).models.list()] == ["liquid-rag", "liquid-rag-generative", "liquid-rag-extractive"]
    with LiveServer(create_app(index=beir_index, model=scripted_answers(), answer_style="extractive",
                               allowed_answer_styles=["extractive"])) as only_extractive:
        assert [m.id for m in client_for(only_extractive).models.list()] == ["liquid-rag", "liquid-rag-extractive"]
        with pytest.raises(openai.BadRequestError, match="answer_style 'generative' is not allowed on this server"):
            client_for(only_extractive).chat.completions.create(model="liquid-rag-generative", messages=ask())


def test_a_plain_completion_cites_with_markers_and_the_extra_fields(server):
    completion = client_for(server).chat.completions.create(model="liquid-rag", messages=ask())
    assert completion.object == "chat.completion" and completion.model == "liquid-rag"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content == f"{GENERATIVE_ANSWER} [1]"
    extra = completion.model_extra
    assert [c["index"] for c in extra["citations"]] == [1]
    assert extra["citations"][0]["id"] == "sourdough" and extra["citations"][0]["title"] == "Sourdough starter"
    assert extra["rag"]["answer"] == GENERATIVE_ANSWER and extra["rag"]["refused"] is False
    assert extra["rag"]["answer_style"] == "generative"


def test_the_model_name_or_the_extension_field_picks_the_style(server):
    client = client_for(server)
    by_name = client.chat.completions.create(model="liquid-rag-extractive", messages=ask())
    by_field = client.chat.completions.create(model="liquid-rag", messages=ask(), extra_body={"answer_style": "extractive"})
    for completion in (by_name, by_field):
        rag = completion.model_extra["rag"]
        assert rag["answer_style"] == "extractive" and rag["answer"] in BEIR_DOCS["sourdough"][1]
        assert completion.choices[0].message.content == rag["answer"] + " [1]"
    with pytest.raises(openai.BadRequestError, match="answers in style 'extractive'"):
        client.chat.completions.create(model="liquid-rag-extractive", messages=ask(),
                                       extra_body={"answer_style": "generative"})


def test_a_streamed_completion_adds_up_to_the_plain_one(server):
    client = client_for(server)
    plain = client.chat.completions.create(model="liquid-rag", messages=ask())
    chunks = list(client.chat.completions.create(model="liquid-rag", messages=ask(), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert len([c for c in chunks if c.choices[0].delta.content]) > 2  # text came in pieces
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"] == plain.model_extra["citations"]

    raw = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                     json={"model": "liquid-rag", "messages": ask(), "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_a_follow_up_question_is_retrieved_with_its_history(server):
    client = client_for(server)
    first = client.chat.completions.create(model="liquid-rag-extractive",
                                           messages=ask("What is a sourdough starter?"))
    follow_up = "And how often does it need feeding?"
    conversation = [*ask("What is a sourdough starter?"),
                    {"role": "assistant", "content": first.choices[0].message.content}, *ask(follow_up)]
    second = client.chat.completions.create(model="liquid-rag-extractive", messages=conversation)
    alone = client.chat.completions.create(model="liquid-rag-extractive", messages=ask(follow_up))
    assert second.model_extra["citations"][0]["id"] == "sourdough"
    assert "once or twice a day" in second.choices[0].message.content
    # without the history the follow-up names nothing the index holds: a refusal
    assert alone.model_extra["rag"]["refused"] is True and alone.model_extra["citations"] == []


def test_a_missing_or_wrong_key_is_a_401_in_openai_shape(server):
    with pytest.raises(openai.AuthenticationError, match="invalid API key") as wrong:
        client_for(server, key="wrong").chat.completions.create(model="liquid-rag", messages=ask())
    assert wrong.value.body["code"] == "invalid_api_key"
    r = httpx.get(f"{server.url}/v1/models")
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "unsupported parameter: tools"),
        ({"n": 2}, "n: only one choice is supported (got 2)"),
        ({"logprobs": True}, "logprobs: log probabilities are not supported"),
        ({"response_format": {"type": "json_object"}, "stop": ["x"]}, "unsupported parameters: response_format, stop"),
        ({"extra_body": {"k": 50}}, "k: Input should be less than or equal to 20 (got 50)"),
        ({"extra_body": {"answer_mode": "tool", "answer_style": "extractive"}}, "needs answer_mode 'context' or 'auto'"),
    ],
)
def test_unsupported_parameters_get_a_400_naming_them(server, params, message):
    with pytest.raises(openai.BadRequestError) as info:
        client_for(server).chat.completions.create(model="liquid-rag", messages=ask(), **params)
    assert message in info.value.body["message"]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "assistant", "content": "Hello."}], "the last message must be the user's question"),
        ([*ask(), {"role": "tool", "content": "x", "tool_call_id": "1"}], "messages[1].role 'tool': tool messages are not supported"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
         "messages[0].content[0]: only text parts are supported (got type 'image_url')"),
        ([{"role": "user", "content": "   "}], "the last user message is empty"),
        ([{"role": "user", "content": "x" * 2500}], "has 2500 characters; at most 2000"),
    ],
)
def test_bad_conversations_get_a_400(server, messages, message):
    with pytest.raises(openai.BadRequestError) as info:
        client_for(server).chat.completions.create(model="liquid-rag", messages=messages)
    assert message in info.value.body["message"]


def test_errors_outside_the_sdk_checks_are_openai_shaped_too(server):
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    bad_json = httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json", headers=headers)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="the model 'gpt-4o' does not exist"):
        client_for(server).chat.completions.create(model="gpt-4o", messages=ask())
    long_history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 400} for i in range(40)]
    with pytest.raises(openai.APIStatusError) as info:
        client_for(server).chat.completions.create(model="liquid-rag", messages=[*long_history, *ask()])
    assert info.value.status_code == 413
    assert "the limit is 65536 bytes" in info.value.body["message"] and "the whole conversation counts" in info.value.body["message"]


def test_the_rate_limit_is_a_429_with_retry_after(beir_index):
    limits = ServiceLimits(rate_per_s=0.01, burst=2)
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=scripted_answers(), limits=limits)) as live:
        client = client_for(live)
        client.models.list()
        client.chat.completions.create(model="liquid-rag", messages=ask())
        with pytest.raises(openai.RateLimitError, match="rate limit") as info:
            client.chat.completions.create(model="liquid-rag", messages=ask())
        assert info.value.response.headers["retry-after"] == "100"


def test_answers_over_the_slots_get_a_503_in_openai_shape(beir_index):
    limits = ServiceLimits(max_concurrent_asks=1, ask_queue_timeout_s=0)
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=scripted_answers(delay_s=1.0), limits=limits)) as live:
        async def main():
            client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, timeout=60)
            calls = [client.chat.completions.create(model="liquid-rag", messages=ask()) for _ in range(3)]
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(main())
    shed = [r for r in results if isinstance(r, openai.InternalServerError)]
    assert len(shed) == 2 and len(results) - len(shed) == 1
    assert all(r.status_code == 503 and r.body["code"] == "overloaded" and "busy: 1 answers" in r.body["message"]
               for r in shed)


def test_a_model_that_cannot_load_is_a_503(beir_index, tmp_path):
    from liquid_shared.models import LiquidModel, ModelSpec

    broken = LiquidModel(ModelSpec(model=str(tmp_path / "no-such-model")))
    with LiveServer(create_app(index=beir_index, api_key=KEY, model=broken)) as live:
        with pytest.raises(openai.InternalServerError) as info:
            client_for(live).chat.completions.create(model="liquid-rag", messages=ask())
    assert info.value.status_code == 503 and info.value.body["code"] == "model_unavailable"
    assert "no-such-model" in info.value.body["message"]


@pytest.mark.slow
@pytest.mark.real_model
def test_the_offline_model_answers_through_the_chat_api(beir_index):
    """SmolLM2-135M behind the chat API: an extractive answer (a sentence of the cited chunk), the same
    text streamed and plain (greedy decoding)."""
    with LiveServer(create_app(index=beir_index, api_key=KEY, answer_style="extractive")) as live:
        client = client_for(live)
        plain = client.chat.completions.create(model="liquid-rag", messages=ask())
        streamed = "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(model="liquid-rag", messages=ask(), stream=True))
    rag = plain.model_extra["rag"]
    assert rag["refused"] is False and rag["answer_style"] == "extractive"
    cited = plain.model_extra["citations"]
    assert cited and rag["answer"] in BEIR_DOCS[cited[0]["id"]][1]
    assert streamed == plain.choices[0].message.content
