"""The routing half of ``aroutd mock-upstream``, pure: a :class:`MockRequest` in, a
:class:`MockAnswer` out, never an exception.

Routes (a model may carry a ``provider/`` prefix; it is echoed back as received):

- OpenAI: ``POST /v1/chat/completions``, ``POST /v1/responses`` (the Responses API),
  ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{id}``.
- Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``; ``GET /v1/models``
  with an ``anthropic-version`` header lists Claude models.
- Gemini, under ``/v1beta/models/`` and ``/v1/models/``: ``{model}:generateContent``,
  ``:streamGenerateContent`` (SSE with ``?alt=sse``), ``:countTokens``, ``:embedContent``,
  ``:batchEmbedContents``; ``GET /v1beta/models`` and ``GET /v1beta/models/{model}``.
- ``/mock/echo`` and ``/v1/mock/echo`` (and any path below them), any method: JSON
  ``{method, path, query, headers, body, body_base64}`` of exactly what arrived (``path``
  undecoded, ``headers`` as ``[name, value]`` pairs in arrival order).

Control headers (:func:`parse_controls`): ``X-Mock-Delay-Ms`` (wait before the response
head), ``X-Mock-Event-Delay-Ms`` (wait between SSE events), ``X-Mock-Status`` (answer that
status with an OpenAI-style error body), ``X-Mock-Cost`` (echoed as ``X-ARouter-Cost``).
A malformed control header is a 400. Bad JSON is a 400 in the provider's own error shape,
a wrong method a 405, an unknown path a JSON 404.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

from aroutd.errors import BadRequest, HTTPError, MethodNotAllowed, NotFound
from aroutd.mock import gemini as g
from aroutd.mock import providers as p
from aroutd.mock import responses

__all__ = [
    "ECHO_PATHS",
    "MockAnswer",
    "MockControls",
    "MockRequest",
    "error_response",
    "parse_controls",
    "respond",
]

ECHO_PATHS = ("/mock/echo", "/v1/mock/echo")
MAX_MOCK_DELAY_MS = 600_000.0
GEMINI_ACTIONS = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    }
)
# google.rpc.Code names Gemini puts in error.status
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MockRequest:
    method: str
    path: str  # percent-decoded, for routing
    raw_path: str  # as received (latin-1), for the echo
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MockControls:
    """The ``X-Mock-*`` request headers, parsed."""

    delay_s: float = 0.0
    event_delay_s: float | None = None
    status: int | None = None
    cost: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MockAnswer:
    """A response and how to play it out (the delays asked for)."""

    response: p.MockResponse
    controls: MockControls


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _delay_ms(value: str, name: str) -> float:
    try:
        ms = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number of milliseconds") from None
    if not math.isfinite(ms) or not 0 <= ms <= MAX_MOCK_DELAY_MS:
        raise BadRequest(f"{name} must be between 0 and {MAX_MOCK_DELAY_MS:.0f}")
    return ms / 1000


def parse_controls(headers: tuple[tuple[str, str], ...]) -> MockControls:
    """The X-Mock-* headers; a malformed one raises BadRequest."""
    controls = MockControls()
    if (value := _header(headers, "x-mock-delay-ms")) is not None:
        controls = replace(controls, delay_s=_delay_ms(value, "X-Mock-Delay-Ms"))
    if (value := _header(headers, "x-mock-event-delay-ms")) is not None:
        controls = replace(controls, event_delay_s=_delay_ms(value, "X-Mock-Event-Delay-Ms"))
    if (value := _header(headers, "x-mock-status")) is not None:
        digits = value.strip()  # str.strip() drops more than int() skips (\x1c-\x1f)
        status = int(digits) if digits.isascii() and digits.isdigit() else 0
        # 204/205/304 cannot carry the error body
        if not 200 <= status <= 599 or status in (204, 205, 304):
            raise BadRequest("X-Mock-Status must be an HTTP status from 200 to 599")
        controls = replace(controls, status=status)
    if (value := _header(headers, "x-mock-cost")) is not None:
        controls = replace(controls, cost=value.strip())
    return controls


def _provider_of(path: str) -> str:
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and ":" in path):
        return "gemini"
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai"


def error_response(provider: str, status: int, message: str, type_: str) -> p.MockResponse:
    """An error in the provider's own shape."""
    payload: dict[str, Any]
    if provider == "anthropic":
        payload = {"type": "error", "error": {"type": type_, "message": message}}
    elif provider == "gemini":
        code_name = _GOOGLE_STATUS.get(status, "UNKNOWN")
        payload = {"error": {"code": status, "message": message, "status": code_name}}
    else:
        payload = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return p.json_response(status, payload)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("invalid JSON body") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def _require(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"method {method} not allowed")


def _echo(req: MockRequest) -> p.MockResponse:
    return p.json_response(
        200,
        {
            "method": req.method,
            "path": req.raw_path,
            "query": req.query,
            "headers": [list(h) for h in req.headers],
            "body": req.body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(req.body).decode(),
        },
    )


def _gemini_action(req: MockRequest, model: str, action: str) -> p.MockResponse:
    _require(req.method, "POST")
    body = _json_object(req.body)
    if action in ("generateContent", "streamGenerateContent"):
        stream = action == "streamGenerateContent"
        sse = "sse" in parse_qs(req.query).get("alt", [])
        return g.gemini_generate(body, req.body, model, stream=stream, sse=sse)
    if action == "countTokens":
        return g.gemini_count_tokens(body)
    return g.gemini_embed(body, batch=action == "batchEmbedContents")


def _route(req: MockRequest, *, now: int) -> p.MockResponse:
    path, method = req.path, req.method
    if path in ECHO_PATHS or path.startswith(tuple(e + "/" for e in ECHO_PATHS)):
        return _echo(req)
    if path == "/v1/chat/completions":
        _require(method, "POST")
        return p.openai_chat(_json_object(req.body), req.body, now=now)
    if path == "/v1/responses":
        _require(method, "POST")
        return responses.openai_responses(_json_object(req.body), req.body, now=now)
    if path == "/v1/embeddings":
        _require(method, "POST")
        return p.openai_embeddings(_json_object(req.body))
    if path == "/v1/messages":
        _require(method, "POST")
        return p.anthropic_messages(_json_object(req.body), req.body)
    if path == "/v1/messages/count_tokens":
        _require(method, "POST")
        return p.anthropic_count_tokens(_json_object(req.body))
    if path in ("/v1/models", "/v1beta/models"):
        _require(method, "GET", "HEAD")
        if path == "/v1beta/models":
            return g.gemini_models()
        anthropic = _header(req.headers, "anthropic-version") is not None
        return p.anthropic_models() if anthropic else p.openai_models()
    for prefix in ("/v1beta/models/", "/v1/models/"):
        if not path.startswith(prefix) or len(path) == len(prefix):
            continue
        rest = path[len(prefix) :]
        model, sep, action = rest.rpartition(":")
        if sep and model and action in GEMINI_ACTIONS:
            return _gemini_action(req, model, action)
        _require(method, "GET", "HEAD")
        return p.openai_model(rest) if prefix == "/v1/models/" else g.gemini_model(rest)
    raise NotFound(f"unknown path {path}")


def _with_cost(response: p.MockResponse, cost: str | None) -> p.MockResponse:
    if cost is None:
        return response
    return replace(response, headers=(*response.headers, ("x-arouter-cost", cost)))


def respond(req: MockRequest, *, now: int) -> MockAnswer:
    """The whole mock, pure: every request gets a response, errors included."""
    provider = _provider_of(req.path)
    try:
        controls = parse_controls(req.headers)
    except HTTPError as exc:
        return MockAnswer(
            response=error_response("openai", exc.status, exc.message, exc.type),
            controls=MockControls(),
        )
    if controls.status is not None:
        status = controls.status
        type_ = _OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        response = error_response("openai", status, f"mock status {status}", type_)
        if status == 429:
            response = replace(response, headers=(*response.headers, ("retry-after", "1")))
    else:
        try:
            response = _route(req, now=now)
        except HTTPError as exc:
            response = error_response(provider, exc.status, exc.message, exc.type)
    return MockAnswer(response=_with_cost(response, controls.cost), controls=controls)
