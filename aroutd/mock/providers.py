"""The fake OpenAI and Anthropic behind ``aroutd mock-upstream``, and what all fakes share.

OpenAI: chat completions, embeddings, models. Each builder takes the decoded JSON body
(and ``now`` where the provider puts a time in) and returns a :class:`MockResponse`
shaped like the real provider's answer. Nothing here does I/O: ``router`` picks the
builder, ``server`` plays the response out over ASGI. Gemini lives in ``gemini`` and
the OpenAI Responses API in ``responses``, built from the helpers here.

Rules that make the fake useful to tests:

- usage is deterministic: prompt tokens = characters of the request's text // 4 + 1
  (embeddings: per input), completion tokens are always ``COMPLETION_TOKENS``;
- the reply text is ``"mock reply to N messages"`` (N counts messages, or the Responses API's
  input items, a string input being one), streamed one word per event;
- the model is echoed exactly as received (``openai/gpt-4o`` stays ``openai/gpt-4o``);
- ids are derived from the request body, so the same request gets the same answer;
- a body the builder cannot use raises :class:`aroutd.errors.BadRequest`, which the
  router renders in the provider's own error shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from aroutd.errors import BadRequest

__all__ = [
    "COMPLETION_TOKENS",
    "DEFAULT_EMBEDDING_DIMS",
    "Json",
    "MockResponse",
    "anthropic_count_tokens",
    "anthropic_messages",
    "anthropic_models",
    "dumps",
    "embedding_dims",
    "embedding_vector",
    "json_response",
    "object_list",
    "openai_chat",
    "openai_embeddings",
    "openai_model",
    "openai_models",
    "prompt_tokens",
    "reply_words",
    "request_id",
    "sse_event",
    "sse_response",
    "string_field",
    "text_chars",
]

COMPLETION_TOKENS = 7
DEFAULT_EMBEDDING_DIMS = 8
MAX_EMBEDDING_DIMS = 4096
MODELS_CREATED = 1_700_000_000  # fixed "created" of the model list, so it never changes
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")
ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")

Json = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class MockResponse:
    """One answer. ``events`` non-empty means a stream: one ASGI body message per event."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    events: tuple[bytes, ...] = ()


def json_response(
    status: int, payload: object, *, headers: tuple[tuple[str, str], ...] = ()
) -> MockResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return MockResponse(
        status=status, headers=(("content-type", "application/json"), *headers), body=body
    )


def sse_response(events: list[bytes]) -> MockResponse:
    headers = (("content-type", "text/event-stream"), ("cache-control", "no-cache"))
    return MockResponse(status=200, headers=headers, events=tuple(events))


def dumps(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def sse_event(name: str, payload: Json) -> bytes:
    """One SSE event with an ``event:`` line, as Anthropic and the Responses API send them."""
    return f"event: {name}\ndata: {dumps(payload)}\n\n".encode()


def text_chars(content: object) -> int:
    """Characters of text in a string, a list of strings or a list of ``{"text": ...}`` parts."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def prompt_tokens(chars: int) -> int:
    """The mock's tokenizer: one token per four characters, plus one."""
    return chars // 4 + 1


def reply_words(n_messages: int) -> list[str]:
    """The reply, split the way it is streamed: one word (with its trailing space) per event."""
    words = f"mock reply to {n_messages} messages".split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def object_list(body: Json, key: str) -> list[Json]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRequest(f"'{key}' must be an array of objects")
    return value


def string_field(body: Json, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{key}' is required and must be a string")
    return value


def request_id(prefix: str, raw: bytes) -> str:
    return prefix + hashlib.sha256(raw).hexdigest()[:24]


# -- OpenAI ---------------------------------------------------------------------------------


def _openai_usage(prompt: int) -> Json:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chat(body: Json, raw: bytes, *, now: int) -> MockResponse:
    """POST /v1/chat/completions, streaming when ``"stream": true``."""
    model = string_field(body, "model")
    messages = object_list(body, "messages")
    prompt = prompt_tokens(sum(text_chars(m.get("content")) for m in messages))
    words = reply_words(len(messages))
    cid = request_id("chatcmpl-mock", raw)
    if body.get("stream") is not True:
        message: Json = {
            "role": "assistant",
            "content": "".join(words),
            "refusal": None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        completion = {
            "id": cid,
            "object": "chat.completion",
            "created": now,
            "model": model,
            "choices": [choice],
            "usage": _openai_usage(prompt),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
        return json_response(200, completion)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    deltas: list[tuple[Json, str | None]] = [
        ({"role": "assistant", "content": "", "refusal": None}, None)
    ]
    deltas += [({"content": w}, None) for w in words]
    deltas.append(({}, "stop"))
    events: list[bytes] = []
    for delta, finish in deltas:
        chunk: Json = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": now,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None  # the real API sends null on every chunk but the last
        events.append(f"data: {dumps(chunk)}\n\n".encode())
    if include_usage:
        last: Json = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": now,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": _openai_usage(prompt),
        }
        events.append(f"data: {dumps(last)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return sse_response(events)


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic vector in [-1, 1); every value is exact in float32, so base64 agrees."""
    digest = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(2 * dims)
    return [int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 32768 - 1 for i in range(dims)]


def _embedding_inputs(value: object) -> list[tuple[str, int]]:
    """(hash key, prompt tokens) per input: a string, strings, token ids or lists of ids."""
    if isinstance(value, str):
        return [(value, prompt_tokens(len(value)))]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [(dumps(value), len(value))]
        items: list[tuple[str, int]] = []
        for v in value:
            if isinstance(v, str):
                items.append((v, prompt_tokens(len(v))))
            elif isinstance(v, list) and all(
                isinstance(t, int) and not isinstance(t, bool) for t in v
            ):
                items.append((dumps(v), len(v)))
            else:
                raise BadRequest("'input' must be a string, an array of strings or token arrays")
        return items
    raise BadRequest("'input' must be a string, an array of strings or token arrays")


def embedding_dims(value: object, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_EMBEDDING_DIMS:
        return value
    raise BadRequest(f"dimensions must be an integer from 1 to {MAX_EMBEDDING_DIMS}")


def openai_embeddings(body: Json) -> MockResponse:
    """POST /v1/embeddings, with ``encoding_format`` float (default) or base64."""
    model = string_field(body, "model")
    inputs = _embedding_inputs(body.get("input"))
    dims = embedding_dims(body.get("dimensions"), DEFAULT_EMBEDDING_DIMS)
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format must be 'float' or 'base64'")
    data: list[Json] = []
    for index, (key, _) in enumerate(inputs):
        vector = embedding_vector(key, dims)
        encoded: object = vector
        if fmt == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    prompt = sum(tokens for _, tokens in inputs)
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return json_response(200, {"object": "list", "data": data, "model": model, "usage": usage})


def _openai_model(model_id: str) -> Json:
    return {"id": model_id, "object": "model", "created": MODELS_CREATED, "owned_by": "openai"}


def openai_model(model_id: str) -> MockResponse:
    """GET /v1/models/{id}: every id exists, echoed as asked."""
    return json_response(200, _openai_model(model_id))


def openai_models() -> MockResponse:
    data = [_openai_model(m) for m in OPENAI_MODELS]
    return json_response(200, {"object": "list", "data": data})


# -- Anthropic ------------------------------------------------------------------------------


def _anthropic_prompt(body: Json) -> tuple[int, int]:
    """(prompt tokens, number of messages) of a Messages API body."""
    messages = object_list(body, "messages")
    chars = text_chars(body.get("system")) + sum(text_chars(m.get("content")) for m in messages)
    return prompt_tokens(chars), len(messages)


def anthropic_count_tokens(body: Json) -> MockResponse:
    """POST /v1/messages/count_tokens."""
    string_field(body, "model")
    prompt, _ = _anthropic_prompt(body)
    return json_response(200, {"input_tokens": prompt})


def anthropic_messages(body: Json, raw: bytes) -> MockResponse:
    """POST /v1/messages, streaming (the real event sequence) when ``"stream": true``."""
    model = string_field(body, "model")
    prompt, n_messages = _anthropic_prompt(body)
    words = reply_words(n_messages)
    message: Json = {
        "id": request_id("msg_mock", raw),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(words)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": COMPLETION_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    if body.get("stream") is not True:
        return json_response(200, message)
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events = [
        sse_event("message_start", {"type": "message_start", "message": start}),
        sse_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        sse_event("ping", {"type": "ping"}),
    ]
    for word in words:
        delta = {"type": "text_delta", "text": word}
        events.append(
            sse_event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": COMPLETION_TOKENS},
    }
    events.append(sse_event("message_delta", message_delta))
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return sse_response(events)


def anthropic_models() -> MockResponse:
    """GET /v1/models as Anthropic answers it (asked with an ``anthropic-version`` header)."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in ANTHROPIC_MODELS
    ]
    page = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    return json_response(200, page)
