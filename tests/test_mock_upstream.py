"""Tests of ``aroutd mock-upstream``: the pure router and builders, then the served mock
driven by the real openai, anthropic and google-genai SDKs and by raw httpx."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
from anthropic.types import MessageParam
from google import genai
from google.genai import types as genai_types
from hypothesis import example, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionStreamOptionsParam
from openai.types.responses import Response, ResponseInputParam, ResponseStreamEvent
from pydantic import TypeAdapter

from aroutd.errors import BadRequest
from aroutd.mock import providers as p
from aroutd.mock.router import MockControls, MockRequest, parse_controls, respond
from aroutd.mock.server import main, parse_listen, serve

EVENT_DELAY_S = 0.05


def _req(
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
) -> MockRequest:
    return MockRequest(
        method=method, path=path, raw_path=path, query=query, headers=headers, body=body
    )


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


# -- pure: tokens, builders, router ------------------------------------------------------------


@pytest.mark.parametrize(
    ("chars", "tokens"),
    [
        pytest.param(0, 1, id="empty"),
        pytest.param(3, 1, id="under-four"),
        pytest.param(4, 2, id="four"),
        pytest.param(30, 8, id="thirty"),
    ],
)
def test_prompt_tokens(chars: int, tokens: int) -> None:
    assert p.prompt_tokens(chars) == tokens


def test_reply_words_join_to_the_reply() -> None:
    assert p.reply_words(2) == ["mock ", "reply ", "to ", "2 ", "messages"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            "/v1/chat/completions",
            {"error": {"message": "invalid JSON body", "type": "invalid_request_error",
                       "param": None, "code": None}},
            id="openai",
        ),
        pytest.param(
            "/v1/messages",
            {"type": "error",
             "error": {"type": "invalid_request_error", "message": "invalid JSON body"}},
            id="anthropic",
        ),
        pytest.param(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            {"error": {"code": 400, "message": "invalid JSON body", "status": "INVALID_ARGUMENT"}},
            id="gemini-v1beta",
        ),
        pytest.param(
            "/v1/models/gemini-2.0-flash:streamGenerateContent",
            {"error": {"code": 400, "message": "invalid JSON body", "status": "INVALID_ARGUMENT"}},
            id="gemini-v1",
        ),
    ],
)  # fmt: skip
def test_invalid_json_is_a_400_in_the_provider_shape(path: str, body: dict[str, Any]) -> None:
    answer = respond(_req(path, b"{not json"), now=0)
    assert answer.response.status == 400
    assert json.loads(answer.response.body) == body


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        pytest.param("GET", "/v2/nothing", 404, "unknown path /v2/nothing", id="unknown"),
        pytest.param("GET", "/", 404, "unknown path /", id="root"),
        pytest.param("GET", "/v1/chat/completions", 405, "method GET not allowed", id="method"),
        pytest.param("DELETE", "/v1/models", 405, "method DELETE not allowed", id="models"),
        pytest.param("GET", "/v1/responses", 405, "method GET not allowed", id="responses"),
    ],
)
def test_unknown_paths_and_methods_are_json(
    method: str, path: str, status: int, message: str
) -> None:
    response = respond(_req(path, method=method), now=0).response
    assert response.status == status
    assert json.loads(response.body)["error"]["message"] == message
    assert ("content-type", "application/json") in response.headers


# the Responses API: (body, input tokens, reply); tokens = characters // 4 + 1 as for chat
RESPONSES_CASES = [
    pytest.param({"input": "Hello there, proxy!"}, 5, "mock reply to 1 messages", id="string"),
    pytest.param(
        {"input": "Hello there, proxy!", "instructions": "Be terse."},  # 19 + 9 characters
        8,
        "mock reply to 1 messages",
        id="instructions",
    ),
    pytest.param(
        {
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]},
                {"type": "message", "role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Again"},  # 8 + 6 + 5 characters
            ]
        },
        5,
        "mock reply to 3 messages",
        id="items",
    ),
    pytest.param({"input": []}, 1, "mock reply to 0 messages", id="empty"),
]
_STREAM_EVENT = TypeAdapter[ResponseStreamEvent](ResponseStreamEvent)


def _sse_data(event: bytes) -> Any:
    return json.loads(event.split(b"\ndata: ", 1)[1])


@pytest.mark.parametrize(("body", "tokens", "text"), RESPONSES_CASES)
def test_responses_api_answer_is_a_valid_response(
    body: dict[str, Any], tokens: int, text: str
) -> None:
    body = {"model": "openai/gpt-4o", **body}
    response = respond(_req("/v1/responses", _json(body)), now=1_700_000_123).response
    assert response.status == 200
    assert ("content-type", "application/json") in response.headers
    parsed = Response.model_validate_json(response.body)  # strict: every required field
    assert parsed.output_text == text
    assert (parsed.model, parsed.status, parsed.created_at) == (
        "openai/gpt-4o",
        "completed",
        1_700_000_123,
    )
    assert json.loads(response.body)["usage"] == {
        "input_tokens": tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens + 7,
    }


@pytest.mark.parametrize(("body", "tokens", "text"), RESPONSES_CASES)
def test_responses_api_stream_is_the_real_event_sequence(
    body: dict[str, Any], tokens: int, text: str
) -> None:
    body = {"model": "gpt-4o", **body}
    whole = respond(_req("/v1/responses", _json(body)), now=5).response
    response = respond(_req("/v1/responses", _json({**body, "stream": True})), now=5).response
    assert response.status == 200
    assert ("content-type", "text/event-stream") in response.headers
    events = []
    for raw in response.events:
        name, data, end = raw.decode().split("\n", 2)
        assert (name.startswith("event: "), data.startswith("data: "), end) == (True, True, "\n")
        event = _STREAM_EVENT.validate_json(data.removeprefix("data: "))
        assert event.type == name.removeprefix("event: ")
        events.append(event)
    words = len(p.reply_words(0))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * words,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(getattr(e, "delta", "") for e in events) == text
    created, completed = (_sse_data(response.events[i])["response"] for i in (0, -1))
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    # response.completed carries what the same request without "stream" answers (ids aside:
    # they hash the request body)
    other = json.loads(whole.body)
    assert completed["id"] == created["id"] != other["id"]
    assert completed["output"][0]["content"] == other["output"][0]["content"]
    masked = {"id": "", "output": []}
    assert {**completed, **masked} == {**other, **masked}
    assert completed["usage"]["input_tokens"] == tokens


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"input": "hi"}, "'model' is required and must be a string", id="no-model"),
        pytest.param({"model": "m", "input": 5}, "'input' must be an array of objects", id="input"),
        pytest.param({"model": "m", "input": ["hi"]}, "'input' must be an array of objects",
                     id="input-strings"),
    ],
)  # fmt: skip
def test_responses_api_bad_body_is_an_openai_400(body: dict[str, Any], message: str) -> None:
    response = respond(_req("/v1/responses", _json(body)), now=0).response
    assert response.status == 400
    assert json.loads(response.body) == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


@pytest.mark.parametrize(
    ("headers", "controls"),
    [
        pytest.param((), MockControls(), id="none"),
        pytest.param((("x-mock-delay-ms", "250"),), MockControls(delay_s=0.25), id="delay"),
        pytest.param(
            (("x-mock-event-delay-ms", "0"),), MockControls(event_delay_s=0.0), id="event-delay"
        ),
        pytest.param((("x-mock-status", "503"),), MockControls(status=503), id="status"),
        pytest.param((("x-mock-cost", " 0.123 "),), MockControls(cost="0.123"), id="cost"),
    ],
)
def test_parse_controls(headers: tuple[tuple[str, str], ...], controls: MockControls) -> None:
    assert parse_controls(headers) == controls


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(("x-mock-delay-ms", "soon"), id="delay-word"),
        pytest.param(("x-mock-delay-ms", "-1"), id="delay-negative"),
        pytest.param(("x-mock-delay-ms", "nan"), id="delay-nan"),
        pytest.param(("x-mock-status", "99"), id="status-low"),
        pytest.param(("x-mock-status", "204"), id="status-no-body"),
        pytest.param(("x-mock-status", "５００"), id="status-fullwidth"),
    ],
)
def test_bad_controls_are_400(header: tuple[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_controls((header,))
    response = respond(_req("/v1/chat/completions", headers=(header,)), now=0).response
    assert response.status == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:9999", ("127.0.0.1", 9999), id="v4"),
        pytest.param("localhost:0", ("localhost", 0), id="name"),
        pytest.param("[::1]:8080", ("::1", 8080), id="v6"),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["9999", ":9999", "::1:80", "host:", "host:65536", "host:x", "[::1]80", "a b:1"]
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_listen(text)


def test_embedding_base64_decodes_to_the_float_vector() -> None:
    body = {"model": "text-embedding-3-small", "input": ["a", "bb"], "dimensions": 5}
    floats = json.loads(p.openai_embeddings(body).body)
    b64 = json.loads(p.openai_embeddings({**body, "encoding_format": "base64"}).body)
    for f, b in zip(floats["data"], b64["data"], strict=True):
        assert list(struct.unpack("<5f", base64.b64decode(b["embedding"]))) == f["embedding"]
    assert floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


ROUTED_PATHS = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1beta/models/gemini-2.0-flash:generateContent",
    "/v1beta/models/g:streamGenerateContent",
    "/v1/models/g:countTokens",
    "/v1beta/models/g:embedContent",
    "/v1beta/models/g:batchEmbedContents",
]
FIELD_NAMES = [
    "model", "messages", "input", "contents", "stream", "stream_options", "system",
    "dimensions", "encoding_format", "requests", "content", "systemInstruction",
    "generateContentRequest", "outputDimensionality", "parts", "text", "include_usage",
    "instructions", "role", "type",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


def _check_total(answer_status: int, body: bytes, events: tuple[bytes, ...]) -> None:
    assert answer_status in (200, 400)
    if not events:
        json.loads(body)


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(ROUTED_PATHS), body=st.binary(max_size=200))
def test_any_bytes_get_a_response(path: str, body: bytes) -> None:
    response = respond(_req(path, body), now=0).response
    _check_total(response.status, response.body, response.events)


@settings(max_examples=100, deadline=None)
@given(
    path=st.sampled_from(ROUTED_PATHS),
    body=st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6),
)
def test_any_json_object_gets_a_response(path: str, body: dict[str, Any]) -> None:
    response = respond(_req(path, _json(body), query="alt=sse"), now=0).response
    _check_total(response.status, response.body, response.events)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(["x-mock-delay-ms", "x-mock-status", "x-mock-cost"]), value=st.text())
@example(name="x-mock-status", value="0\x1f")  # str.strip() drops it, int() does not
def test_controls_parse_or_raise_bad_request(name: str, value: str) -> None:
    with contextlib.suppress(BadRequest):
        parse_controls(((name, value),))


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_listen_parses_or_raises_bad_request(text: str) -> None:
    try:
        host, port = parse_listen(text)
    except BadRequest:
        return
    assert host
    assert 0 <= port <= 65535


# -- served: fixtures ----------------------------------------------------------------------------


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    port = await nursery.start(partial(serve, "127.0.0.1", 0))
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def slow_url(nursery: trio.Nursery) -> str:
    port = await nursery.start(partial(serve, "127.0.0.1", 0, event_delay_s=EVENT_DELAY_S))
    return f"http://127.0.0.1:{port}"


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


# -- served: OpenAI ------------------------------------------------------------------------------

CHAT_MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},  # 14 characters
    {"role": "user", "content": "Say hello, mock."},  # 16 characters -> 30 // 4 + 1 = 8
]


async def test_openai_chat_non_streaming(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    completion = await _in_thread(
        lambda: client.chat.completions.create(model="openai/gpt-4o", messages=CHAT_MESSAGES)
    )
    assert completion.model == "openai/gpt-4o"
    assert completion.choices[0].message.content == "mock reply to 2 messages"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (8, 7, 15)
    assert usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize("include_usage", [True, False])
async def test_openai_chat_streaming(url: str, include_usage: bool) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    options: ChatCompletionStreamOptionsParam | openai.Omit = (
        {"include_usage": True} if include_usage else openai.omit
    )

    def run() -> list[Any]:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=CHAT_MESSAGES, stream=True, stream_options=options
        )
        return list(stream)

    chunks = await _in_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to 2 messages"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    if include_usage:
        assert chunks[-1].choices == []
        usage = chunks[-1].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (8, 7, 15)
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None and c.choices for c in chunks)


async def test_openai_embeddings_and_models(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    inputs = ["hello", "a longer sentence"]  # 5 and 17 characters -> 2 + 5 tokens
    default = await _in_thread(
        lambda: client.embeddings.create(model="text-embedding-3-small", input=inputs)
    )
    floats = await _in_thread(
        lambda: client.embeddings.create(
            model="openai/text-embedding-3-small", input=inputs, encoding_format="float"
        )
    )
    assert default.usage.prompt_tokens == 7
    assert floats.model == "openai/text-embedding-3-small"
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert default.data[0].embedding == p.embedding_vector("hello", 8)
    models = await _in_thread(lambda: [m.id for m in client.models.list()])
    assert models == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    model = await _in_thread(lambda: client.models.retrieve("openai/gpt-4o"))
    assert (model.id, model.owned_by) == ("openai/gpt-4o", "openai")


RESPONSES_INPUT: ResponseInputParam = [
    {"role": "user", "content": [{"type": "input_text", "text": "Say hello, mock."}]},  # 16
]
RESPONSES_INSTRUCTIONS = "You are terse."  # 14 characters -> 30 // 4 + 1 = 8, as for chat


async def test_openai_responses_non_streaming(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    start = trio.current_time()
    response = await _in_thread(
        lambda: client.responses.create(
            model="openai/gpt-4o",
            input=RESPONSES_INPUT,
            instructions=RESPONSES_INSTRUCTIONS,
            extra_headers={"X-Mock-Delay-Ms": "100"},
        )
    )
    assert trio.current_time() - start >= 0.1
    assert response.output_text == "mock reply to 1 messages"
    assert (response.model, response.status, response.object) == (
        "openai/gpt-4o",
        "completed",
        "response",
    )
    assert response.id.startswith("resp_mock")
    assert response.instructions == RESPONSES_INSTRUCTIONS
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (8, 7, 15)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    text = await _in_thread(
        lambda: client.responses.create(model="gpt-4o", input="Hello there, proxy!").output_text
    )
    assert text == "mock reply to 1 messages"


async def test_openai_responses_streaming(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)

    def run_raw() -> list[Any]:
        stream = client.responses.create(
            model="gpt-4o", input=RESPONSES_INPUT, instructions=RESPONSES_INSTRUCTIONS, stream=True
        )
        return list(stream)

    events = await _in_thread(run_raw)
    assert events[0].type == "response.created"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "mock reply to 1 messages"
    )
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "mock reply to 1 messages"
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (8, 7, 15)

    def run_helper() -> tuple[str, Response]:
        # the SDK's stream helper accumulates the events into the final response, checking them
        with client.responses.stream(model="gpt-4o", input="Hello there, proxy!") as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            return text, stream.get_final_response()

    text, final = await _in_thread(run_helper)
    assert text == final.output_text == "mock reply to 1 messages"
    assert final.usage is not None and final.usage.total_tokens == 12


async def test_openai_error_status_from_header(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        await _in_thread(
            lambda: client.chat.completions.create(
                model="gpt-4o", messages=CHAT_MESSAGES, extra_headers={"X-Mock-Status": "429"}
            )
        )
    assert caught.value.status_code == 429
    assert caught.value.body == {
        "message": "mock status 429",
        "type": "rate_limit_error",
        "param": None,
        "code": None,
    }


# -- served: Anthropic ---------------------------------------------------------------------------

CLAUDE_SYSTEM = "Be brief."  # 9 characters
CLAUDE_MESSAGES: list[MessageParam] = [
    {"role": "user", "content": "Hello there, Claude!"},  # 20
    {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},  # 3
    {"role": "user", "content": "Again"},  # 5 -> 37 // 4 + 1 = 10
]


async def test_anthropic_non_streaming(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    message = await _in_thread(
        lambda: client.messages.create(
            model="anthropic/claude-mock-1",
            max_tokens=100,
            system=CLAUDE_SYSTEM,
            messages=CLAUDE_MESSAGES,
        )
    )
    assert message.model == "anthropic/claude-mock-1"
    assert message.content[0].text == "mock reply to 3 messages"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 7)


async def test_anthropic_streaming(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    kwargs: dict[str, Any] = {
        "model": "claude-mock-1",
        "max_tokens": 100,
        "system": CLAUDE_SYSTEM,
        "messages": CLAUDE_MESSAGES,
    }

    def run_helper() -> tuple[str, Any]:
        with client.messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message()

    text, final = await _in_thread(run_helper)
    assert text == "mock reply to 3 messages"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 7)
    assert final.stop_reason == "end_turn"
    events = await _in_thread(
        lambda: [e.type for e in client.messages.create(**kwargs, stream=True)]
    )
    assert events == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops ping


async def test_anthropic_count_tokens_and_models(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    count = await _in_thread(
        lambda: client.messages.count_tokens(
            model="claude-mock-1", system=CLAUDE_SYSTEM, messages=CLAUDE_MESSAGES
        )
    )
    assert count.input_tokens == 10
    models = await _in_thread(lambda: [m.id for m in client.models.list()])
    assert models == ["claude-sonnet-4-5", "claude-haiku-4-5"]


# -- served: Gemini ------------------------------------------------------------------------------

GEMINI_PROMPT = "Why is the sky blue?"  # 20 characters
GEMINI_SYSTEM = "Answer like a pirate."  # 21 characters -> 41 // 4 + 1 = 11


def _genai(url: str) -> genai.Client:
    options = genai_types.HttpOptions(base_url=url, api_version="v1beta")
    return genai.Client(api_key="k", http_options=options)


async def test_gemini_generate_and_stream(url: str) -> None:
    client = _genai(url)
    config = genai_types.GenerateContentConfig(system_instruction=GEMINI_SYSTEM)
    response = await _in_thread(
        lambda: client.models.generate_content(
            model="gemini-2.0-flash", contents=GEMINI_PROMPT, config=config
        )
    )
    assert response.text == "mock reply to 1 messages"
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (11, 7)
    assert usage.total_token_count == 18
    assert response.model_version == "gemini-2.0-flash"

    def run_stream() -> list[Any]:
        return list(
            client.models.generate_content_stream(
                model="gemini-2.0-flash", contents=GEMINI_PROMPT, config=config
            )
        )

    chunks = await _in_thread(run_stream)
    assert "".join(c.text for c in chunks) == "mock reply to 1 messages"
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    assert counts == [2, 3, 5, 6, 7]
    assert chunks[-1].usage_metadata.total_token_count == 18
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP


async def test_gemini_count_embed_and_models(url: str) -> None:
    client = _genai(url)
    count = await _in_thread(
        lambda: client.models.count_tokens(model="gemini-2.0-flash", contents=GEMINI_PROMPT)
    )
    assert count.total_tokens == 6
    embedded = await _in_thread(
        lambda: client.models.embed_content(model="text-embedding-004", contents=["a", "bc"])
    )
    assert [e.values for e in embedded.embeddings] == [
        p.embedding_vector("a", 8),
        p.embedding_vector("bc", 8),
    ]
    names = await _in_thread(lambda: [m.name for m in client.models.list()])
    assert names == [
        "models/gemini-2.0-flash",
        "models/gemini-2.5-pro",
        "models/text-embedding-004",
    ]


# -- served: raw HTTP ----------------------------------------------------------------------------


async def test_echo_reports_exactly_what_arrived(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.request(
            "PUT",
            "/v1/mock/echo/a%2Fb?key=x&z=%20",
            headers={"X-Test": "one", "Authorization": "Bearer t"},
            content=b"caf\xc3\xa9 \xff",
        )
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "PUT"
    assert echo["path"] == "/v1/mock/echo/a%2Fb"
    assert echo["query"] == "key=x&z=%20"
    assert ["x-test", "one"] in echo["headers"]
    assert ["authorization", "Bearer t"] in echo["headers"]
    assert base64.b64decode(echo["body_base64"]) == b"caf\xc3\xa9 \xff"
    assert echo["body"] == "café \ufffd"


async def test_status_cost_and_delay_headers(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        failed = await client.get("/mock/echo", headers={"X-Mock-Status": "503"})
        costed = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": []},
            headers={"X-Mock-Cost": "0.123"},
        )
        start = trio.current_time()
        delayed = await client.get("/mock/echo", headers={"X-Mock-Delay-Ms": "150"})
        elapsed = trio.current_time() - start
    assert failed.status_code == 503
    assert failed.json() == {
        "error": {"message": "mock status 503", "type": "server_error", "param": None, "code": None}
    }
    assert costed.status_code == 200
    assert costed.headers["x-arouter-cost"] == "0.123"
    assert costed.json()["usage"]["prompt_tokens"] == 1
    assert delayed.status_code == 200
    assert elapsed >= 0.15


async def test_unknown_path_is_json_404(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v2/whatever")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "not_found_error"


async def _raw_chunks(url: str, path: str, body: dict[str, Any], **headers: str) -> list[bytes]:
    """The body as the chunks that arrived, checking they came at least ``gap`` apart."""
    gap = float(headers.get("X-Mock-Event-Delay-Ms", EVENT_DELAY_S * 1000)) / 1000
    chunks: list[bytes] = []
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient(base_url=url) as client,
        client.stream("POST", path, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            arrivals.append(trio.current_time())
    # each event was flushed before the mock slept: event i came no sooner than i gaps
    # after the first (cumulative, so a client that reads one chunk late is not a failure)
    early = [i for i, t in enumerate(arrivals) if t - arrivals[0] < i * gap * 0.8]
    assert early == [], f"events {early} came sooner than their gaps allow"
    return chunks


async def test_each_openai_event_arrives_as_its_own_chunk(slow_url: str) -> None:
    body = {"model": "gpt-4o", "messages": CHAT_MESSAGES, "stream": True}
    chunks = await _raw_chunks(slow_url, "/v1/chat/completions", body)
    assert len(chunks) == 8  # role, five words, finish, [DONE]
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in chunks)
    assert all(c.count(b"data: ") == 1 for c in chunks)
    assert chunks[-1] == b"data: [DONE]\n\n"


async def test_each_responses_api_event_arrives_as_its_own_chunk(slow_url: str) -> None:
    body = {"model": "gpt-4o", "input": "Hello", "stream": True}
    chunks = await _raw_chunks(slow_url, "/v1/responses", body)
    assert len(chunks) == 13  # created, in_progress, item, part, five words, four closing
    assert all(c.startswith(b"event: response.") and c.endswith(b"}\n\n") for c in chunks)
    assert chunks[-1].startswith(b"event: response.completed\ndata: ")


async def test_each_anthropic_and_gemini_event_arrives_alone(url: str) -> None:
    body = {"model": "claude-mock-1", "messages": CLAUDE_MESSAGES, "stream": True}
    chunks = await _raw_chunks(url, "/v1/messages", body, **{"X-Mock-Event-Delay-Ms": "30"})
    names = [c.split(b"\n", 1)[0] for c in chunks]
    assert names[:3] == [b"event: message_start", b"event: content_block_start", b"event: ping"]
    assert names[-2:] == [b"event: message_delta", b"event: message_stop"]
    assert len(chunks) == 11
    gemini = {"contents": [{"role": "user", "parts": [{"text": GEMINI_PROMPT}]}]}
    path = "/v1beta/models/google/gemini-2.0-flash:streamGenerateContent?alt=sse"
    chunks = await _raw_chunks(url, path, gemini, **{"X-Mock-Event-Delay-Ms": "30"})
    assert len(chunks) == 5
    assert all(c.startswith(b"data: {") and c.endswith(b"}\r\n\r\n") for c in chunks)
    assert json.loads(chunks[0][6:])["modelVersion"] == "google/gemini-2.0-flash"


async def test_client_disconnect_cancels_the_stream(url: str) -> None:
    body = {"model": "gpt-4o", "messages": CHAT_MESSAGES, "stream": True}
    async with httpx.AsyncClient(base_url=url) as client:
        headers = {"X-Mock-Event-Delay-Ms": "500"}
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            async for _ in r.aiter_raw():
                break  # leave after the first event; closing the response drops the connection
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(100):  # the mock notices at its next send, within a few ms
            stats = (await client.get("/mock/stats")).json()
            if stats["disconnects"]:
                break
            await trio.sleep(0.02)
    assert stats == {"requests": 1, "disconnects": 1, "streams_completed": 0}


# -- the command -------------------------------------------------------------------------------


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def test_main_prints_its_url_and_exits_0_on_sigterm() -> None:
    code = "import sys; from aroutd.mock.server import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--listen", "127.0.0.1:0", "--delay-ms", "1"]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        with trio.fail_after(10):
            line = (await _read_line(proc.stdout)).decode()
        assert line.startswith("mock-upstream listening on http://127.0.0.1:")
        assert line.endswith("\n")
        async with httpx.AsyncClient(base_url=line.split()[-1]) as client:
            models = await client.get("/v1beta/models")
        assert models.status_code == 200
        proc.terminate()
        with trio.fail_after(10):
            assert await proc.wait() == 0
        assert await proc.stderr.receive_some() == b""
    finally:
        proc.kill()  # a no-op once it exited
        await proc.wait()


def test_main_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["--listen", f"127.0.0.1:{busy.getsockname()[1]}"]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--listen", "nowhere"], id="listen"),
        pytest.param(["--delay-ms", "-5"], id="delay"),
        pytest.param(["--event-delay-ms", "inf"], id="event-delay"),
    ],
)
def test_main_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
