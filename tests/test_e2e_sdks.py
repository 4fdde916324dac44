"""End to end: the real daemon, the real openai / anthropic / google-genai SDKs, the mock upstream.

One daemon and one mock upstream serve the whole module (subprocesses on
loopback). Expected usage numbers follow the mock's deterministic rule:
prompt tokens = characters // 4 + 1, completion tokens = 7.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from google import genai
from google.genai import types as genai_types
from openai.types.chat import ChatCompletionMessageParam

from .e2e import UPSTREAM_SECRET, Daemon, aroutd, mock_upstream, write_config
from .support import Keys

HELLO = "Hello there, proxy!"  # 19 chars -> 5 prompt tokens
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": HELLO}]
CLAUDE_MESSAGES: list[MessageParam] = [{"role": "user", "content": HELLO}]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp: Path = tmp_path_factory.mktemp("e2e")
    keys = Keys()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp, up_port, keys)
        with aroutd(cfg, keys) as daemon:
            yield daemon
            log = daemon.proc.text()
            for secret in (keys.api, keys.narrow, keys.mgmt, UPSTREAM_SECRET):
                assert secret not in log, "a secret reached the log"


def oai(d: Daemon, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.base}/v1", api_key=key or d.keys.api, max_retries=0)


def test_openai_chat(d: Daemon) -> None:
    r = oai(d).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert r.choices[0].message.content == "mock reply to 1 messages"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 7)
    assert r.model == "gpt-4o-mini"


def test_openai_chat_streaming_with_usage(d: Daemon) -> None:
    stream = oai(d).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "mock reply to 1 messages"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 7)


def test_openai_responses(d: Daemon) -> None:
    r = oai(d).responses.create(model="gpt-4o-mini", input=HELLO)
    assert r.output_text == "mock reply to 1 messages"
    assert (r.model, r.status) == ("gpt-4o-mini", "completed")
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (5, 7, 12)
    # the model is read from the Responses body too: the narrow key gets gpt-4o-mini only
    assert oai(d, d.keys.narrow).responses.create(model="gpt-4o-mini", input=HELLO).output_text
    with pytest.raises(openai.PermissionDeniedError) as denied:
        oai(d, d.keys.narrow).responses.create(model="gpt-4o", input=HELLO)
    assert denied.value.body == {
        "message": "model 'openai/gpt-4o' is not allowed for this API key",
        "type": "forbidden_error",
    }


def test_openai_responses_streaming(d: Daemon) -> None:
    events = list(oai(d).responses.create(model="openai/gpt-4o-mini", input=HELLO, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))  # none lost
    assert events[0].type == "response.created"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "mock reply to 1 messages"
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == text
    assert done.response.usage is not None
    assert (done.response.usage.input_tokens, done.response.usage.output_tokens) == (5, 7)
    with oai(d).responses.stream(model="gpt-4o-mini", input=HELLO) as stream:
        final = stream.get_final_response()  # the SDK's helper, checking the event sequence
    assert final.output_text == text


def test_openai_embeddings_and_models(d: Daemon) -> None:
    client = oai(d)
    emb = client.embeddings.create(model="text-embedding-3-small", input="abcdefgh")
    assert emb.usage.prompt_tokens == 3
    assert len(emb.data) == 1 and len(emb.data[0].embedding) > 0
    models = client.models.list()
    assert len(models.data) > 0


def test_openai_errors_are_sdk_errors(d: Daemon) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        oai(d, "lr_live_" + "9" * 48).models.list()
    assert auth.value.status_code == 401
    assert auth.value.body == {"message": "invalid api key", "type": "authentication_error"}
    with pytest.raises(openai.PermissionDeniedError) as denied:
        oai(d, d.keys.narrow).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert denied.value.body == {
        "message": "model 'openai/gpt-4o' is not allowed for this API key",
        "type": "forbidden_error",
    }


def test_anthropic_messages(d: Daemon) -> None:
    client = anthropic.Anthropic(base_url=d.base, api_key=d.keys.api, max_retries=0)
    msg = client.messages.create(model="claude-test", max_tokens=50, messages=CLAUDE_MESSAGES)
    assert msg.content[0].type == "text" and msg.content[0].text == "mock reply to 1 messages"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 7)


def test_anthropic_streaming(d: Daemon) -> None:
    client = anthropic.Anthropic(base_url=d.base, api_key=d.keys.api, max_retries=0)
    with client.messages.stream(
        model="anthropic/claude-test",
        max_tokens=50,
        messages=CLAUDE_MESSAGES,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "mock reply to 1 messages"
    assert final.usage.output_tokens == 7


def test_anthropic_provider_restriction(d: Daemon) -> None:
    client = anthropic.Anthropic(base_url=d.base, api_key=d.keys.narrow, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.create(model="claude-test", max_tokens=5, messages=CLAUDE_MESSAGES)
    assert denied.value.status_code == 403
    assert "provider 'anthropic' is not allowed for this API key" in str(denied.value)


def _gemini(d: Daemon, api_version: str | None = None) -> genai.Client:
    opts = genai_types.HttpOptions(base_url=d.base, api_version=api_version)
    return genai.Client(api_key=d.keys.api, http_options=opts)


@pytest.mark.parametrize("api_version", [None, "v1"])
def test_gemini_generate(d: Daemon, api_version: str | None) -> None:
    client = _gemini(d, api_version)  # keep a reference: a collected Client closes its transport
    r = client.models.generate_content(model="gemini-2.0-flash", contents="Hello there, proxy!")
    assert r.text == "mock reply to 1 messages"
    assert r.usage_metadata is not None
    assert r.usage_metadata.prompt_token_count == 5
    assert r.usage_metadata.candidates_token_count == 7


def test_gemini_streaming(d: Daemon) -> None:
    client = _gemini(d)
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.0-flash", contents="Hello there, proxy!"
        )
    )
    assert "".join(c.text or "" for c in chunks) == "mock reply to 1 messages"
    last = chunks[-1].usage_metadata
    assert last is not None and last.candidates_token_count == 7


def test_gemini_query_key(d: Daemon) -> None:
    r = httpx.post(
        f"{d.base}/v1beta/models/gemini-2.0-flash:generateContent",
        params={"key": d.keys.api},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert r.status_code == 200
    assert r.json()["usageMetadata"]["candidatesTokenCount"] == 7


def test_forwarded_headers_seen_by_upstream(d: Daemon) -> None:
    r = httpx.post(
        f"{d.base}/v1/mock/echo?x=1&key={d.keys.api}",
        headers={"x-arouter-key-id": "spoofed", "x-request-id": "rid-1"},
        content=b'{"model": "gpt-4o"}',
    )
    assert r.status_code == 200
    seen = r.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["query"] == "x=1"
    assert headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert headers["x-arouter-key-id"] == "main"
    assert headers["x-arouter-tenant"] == "acme"
    assert headers["x-request-id"] == "rid-1"
    assert r.headers["x-request-id"] == "rid-1"


def test_access_log_line(d: Daemon) -> None:
    httpx.get(
        f"{d.base}/v1/models",
        params={"key": d.keys.api, "q": "z"},
        headers={"x-request-id": "log-me"},
    )
    line = d.proc.wait_for('"request_id":"log-me"')
    assert '"status":200' in line
    assert '"key_id":"main"' in line
    assert '"auth_method":"query"' in line
    assert "key=REDACTED" in line or "key=%5BREDACTED" in line
