"""aroutd.admission: the head admitted (405/400/404) and the forward planned (SPEC §4-§6)."""

from __future__ import annotations

import pytest

from aroutd.admission import Forward, admit_head, plan_forward
from aroutd.config.values import RouteConfig, UpstreamConfig
from aroutd.errors import BadRequest, Forbidden, HTTPError, MethodNotAllowed, NotFound
from aroutd.headers import Headers
from aroutd.principal import Principal, Scope

ROUTES = (
    RouteConfig(pattern="/v1*/models/*:*", upstream="g", provider="google"),
    RouteConfig(prefix="/v1/", upstream="o", provider="openai"),
    RouteConfig(
        prefix="/openai/",
        upstream="o",
        provider="openai",
        strip_prefix="/openai",
        rewrite_model=True,
    ),
)
UPSTREAMS = {
    name: UpstreamConfig(
        name=name, url="http://u", scheme="http", host="u", port=80, base_path=base
    )
    for name, base in (("g", ""), ("o", "/base"))
}
PROVIDERS = frozenset({"openai", "google", "anthropic"})
WS = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]


@pytest.mark.parametrize(
    ("method", "target", "kind", "route"),
    [
        pytest.param(b"GET", b"/healthz", "healthz", None, id="healthz"),
        pytest.param(b"HEAD", b"/%68ealthz", "healthz", None, id="healthz-spelled"),
        pytest.param(b"POST", b"/v1/x402/auth", "signin", None, id="signin"),
        pytest.param(b"GET", b"/api/v1/keys/abc", "management", None, id="management"),
        pytest.param(b"GET", b"/v1/key", "self", None, id="self"),
        pytest.param(b"GET", b"/api/v1/balance", "balance", None, id="balance"),
        pytest.param(b"GET", b"/api/v1/transactions", "transactions", None, id="transactions"),
        pytest.param(b"POST", b"/v1/chat/completions", "inference", 1, id="prefix-route"),
        pytest.param(b"POST", b"/v1beta/models/g:generateContent", "inference", 0, id="pattern"),
        pytest.param(b"GET", b"/api/v1/other", "inference", None, id="protected-unrouted"),
    ],
)
def test_admit_head(method: bytes, target: bytes, kind: str, route: int | None) -> None:
    head = admit_head(method, target, [], ROUTES)
    assert head.kind == kind
    assert head.route == (None if route is None else ROUTES[route])
    assert not head.upgrade


@pytest.mark.parametrize(
    ("method", "target", "error", "message"),
    [
        pytest.param(b"CONNECT", b"u:443", MethodNotAllowed, "method not allowed", id="connect"),
        pytest.param(b"TRACE", b"/v1/x", MethodNotAllowed, "method not allowed", id="trace"),
        pytest.param(b"GET", b"/v1/../x", BadRequest, "invalid request path", id="dotdot"),
        pytest.param(b"GET", b"/elsewhere", NotFound, "not found", id="unrouted"),
    ],
)
def test_admit_head_refuses(
    method: bytes, target: bytes, error: type[HTTPError], message: str
) -> None:
    with pytest.raises(error) as info:
        admit_head(method, target, [], ROUTES)
    assert info.value.message == message


def test_connect_names_what_is_allowed() -> None:
    with pytest.raises(MethodNotAllowed) as info:
        admit_head(b"CONNECT", b"u:443", [], ROUTES)
    assert dict(info.value.headers)["Allow"].startswith("GET, HEAD, POST")


def _plan(
    target: bytes,
    body: bytes,
    scopes: tuple[Scope, ...] = (),
    headers: Headers = (),
) -> Forward:
    head = admit_head(b"POST" if body else b"GET", target, headers, ROUTES)
    assert head.route is not None
    principal = Principal(kind="api", tenant="t", key_id="k", scopes=scopes)
    ct = b"application/json" if body else None
    return plan_forward(
        head, head.route, principal, body, content_type=ct, providers=PROVIDERS, upstreams=UPSTREAMS
    )


def test_plan_forward_target_and_model() -> None:
    plan = _plan(b"/openai/v1/chat/completions?key=secret&x=1", b'{"model":"openai/gpt-4o"}')
    assert plan.target == b"/base/v1/chat/completions?x=1"  # base path, prefix stripped, no key
    assert plan.body == b'{"model":"gpt-4o"}'  # rewrite_model
    assert (plan.match.provider, plan.match.canonical_model) == ("openai", "openai/gpt-4o")


def test_plan_forward_normalized_gemini_path() -> None:
    plan = _plan(b"/v1beta/%6Dodels/gemini-2.0-flash:generateContent", b"{}")
    assert plan.target == b"/v1beta/models/gemini-2.0-flash:generateContent"
    assert plan.match.canonical_model == "google/gemini-2.0-flash"


@pytest.mark.parametrize(
    ("target", "body", "headers", "message"),
    [
        pytest.param(
            b"/v1/images/generations", b"{}", [], "this API key requires a model to be named",
            id="body-without-model",
        ),
        pytest.param(
            b"/v1/realtime", b"", WS, "this API key requires a model to be named", id="ws-no-model"
        ),
        pytest.param(
            b"/v1/realtime?model=gpt-4o", b"", WS,
            "model 'openai/gpt-4o' is not allowed for this API key", id="ws-other-model",
        ),
        pytest.param(
            b"/v1beta/models/gemini-pro:generateContent", b"{}", [],
            "provider 'google' is not allowed for this API key", id="provider",
        ),
    ],
)  # fmt: skip
def test_plan_forward_scope(
    target: bytes, body: bytes, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    scopes = (Scope(providers=("openai",), models=("openai/gpt-4o-mini",)),)
    with pytest.raises(Forbidden) as info:
        _plan(target, body, scopes, headers)
    assert info.value.message == message


def test_plan_forward_websocket_with_its_model() -> None:
    scopes = (Scope(models=("openai/gpt-4o-mini",)),)
    plan = _plan(b"/v1/realtime?model=gpt-4o-mini", b"", scopes, WS)
    assert plan.upgrade and plan.match.canonical_model == "openai/gpt-4o-mini"
    assert plan.target == b"/base/v1/realtime?model=gpt-4o-mini"
