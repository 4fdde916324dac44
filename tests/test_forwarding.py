"""aroutd.forwarding: the upstream request head and the client response head (SPEC §6)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.config.parse import UpstreamConfig
from aroutd.forwarding import (
    client_address,
    request_id_from,
    response_headers,
    upstream_request_headers,
)
from aroutd.headers import connection_tokens
from aroutd.principal import Principal

Headers = list[tuple[bytes, bytes]]

OPENAI = UpstreamConfig(
    name="openai",
    url="https://api.openai.com",
    scheme="https",
    host="api.openai.com",
    port=443,
    base_path="",
    auth_header="Authorization",
    auth_value="Bearer sk-upstream",
)
API = Principal(kind="api", tenant="acme", key_id="ci-bot")
WALLET = Principal(kind="wallet", tenant="wallet:eip155:8453:0xAb", wallet="eip155:8453:0xAb")
CLIENT_KEY = b"lr_live_" + b"a" * 48


def fwd(
    headers: Headers,
    *,
    upstream: UpstreamConfig = OPENAI,
    principal: Principal = API,
    peer_trusted: bool = False,
    content_length: int | None = 5,
    **kw: object,
) -> Headers:
    return upstream_request_headers(
        headers,
        upstream=upstream,
        principal=principal,
        client_addr="203.0.113.7",
        peer_trusted=peer_trusted,
        proto="https",
        request_id="req-1",
        content_length=content_length,
        **kw,  # type: ignore[arg-type]
    )


TAIL = [
    (b"content-length", b"5"),
    (b"authorization", b"Bearer sk-upstream"),
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-forwarded-proto", b"https"),
    (b"x-request-id", b"req-1"),
    (b"x-arouter-tenant", b"acme"),
    (b"x-arouter-key-id", b"ci-bot"),
]


def test_upstream_headers_full() -> None:
    client = [
        (b"host", b"proxy.example"),
        (b"authorization", b"Bearer " + CLIENT_KEY),
        (b"content-type", b"application/json"),
        (b"x-api-key", CLIENT_KEY),
        (b"x-goog-api-key", CLIENT_KEY),
        (b"connection", b"keep-alive, X-Secret-Hop"),
        (b"x-secret-hop", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"te", b"trailers"),
        (b"trailer", b"x-t"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"Basic eA=="),
        (b"proxy-authenticate", b"Basic"),
        (b"content-length", b"999"),
        (b"x-arouter-tenant", b"evil"),
        (b"X-ARouter-Cost", b"0"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x-forwarded-proto", b"http"),
        (b"x-request-id", b"client-id"),
        (b"expect", b"100-continue"),
        (b"forwarded", b"for=1.1.1.1"),
        (b"x-real-ip", b"1.1.1.1"),
        (b"anthropic-version", b"2023-06-01"),
        (b"user-agent", b"  odd\tvalue \xff"),
        (b"accept", b"text/event-stream"),
    ]
    assert fwd(client) == [
        (b"host", b"api.openai.com"),
        (b"content-type", b"application/json"),
        (b"anthropic-version", b"2023-06-01"),
        (b"user-agent", b"  odd\tvalue \xff"),
        (b"accept", b"text/event-stream"),
        *TAIL,
    ]


def test_trusted_peer_keeps_and_appends() -> None:
    client = [
        (b"x-forwarded-for", b"198.51.100.1"),
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"forwarded", b"for=198.51.100.1"),
        (b"x-forwarded-host", b"public.example"),
    ]
    out = fwd(client, peer_trusted=True, content_length=None)
    assert (b"x-forwarded-for", b"198.51.100.1, 10.0.0.2, 203.0.113.7") in out
    assert (b"forwarded", b"for=198.51.100.1") in out
    assert (b"x-forwarded-host", b"public.example") in out
    out = fwd(client, peer_trusted=True, content_length=None, peer_addr="10.0.0.1")
    assert (b"x-forwarded-for", b"198.51.100.1, 10.0.0.2, 10.0.0.1") in out


def test_untrusted_peer_replaces() -> None:
    out = fwd([(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-host", b"h")])
    assert [v for n, v in out if n == b"x-forwarded-for"] == [b"203.0.113.7"]
    assert b"x-forwarded-host" not in {n for n, _ in out}


def test_trusted_peer_without_incoming_xff() -> None:
    out = fwd([], peer_trusted=True)
    assert [v for n, v in out if n == b"x-forwarded-for"] == [b"203.0.113.7"]


@pytest.mark.parametrize(
    ("upstream", "host"),
    [
        pytest.param(OPENAI, b"api.openai.com", id="https-default"),
        pytest.param(
            UpstreamConfig(
                name="l", url="", scheme="http", host="127.0.0.1", port=8000, base_path=""
            ),
            b"127.0.0.1:8000",
            id="port",
        ),
        pytest.param(
            UpstreamConfig(name="l", url="", scheme="http", host="h", port=80, base_path=""),
            b"h",
            id="http-default",
        ),
        pytest.param(
            UpstreamConfig(name="l", url="", scheme="https", host="h", port=80, base_path=""),
            b"h:80",
            id="https-on-80",
        ),
        pytest.param(
            UpstreamConfig(name="l", url="", scheme="http", host="::1", port=8000, base_path=""),
            b"[::1]:8000",
            id="ipv6",
        ),
    ],
)
def test_host_header(upstream: UpstreamConfig, host: bytes) -> None:
    assert fwd([(b"host", b"client")], upstream=upstream)[0] == (b"host", host)


def test_no_upstream_auth_and_custom_auth_header() -> None:
    anthropic = UpstreamConfig(
        name="anthropic",
        url="https://api.anthropic.com",
        scheme="https",
        host="api.anthropic.com",
        port=443,
        base_path="",
        auth_header="X-Api-Key",
        auth_value="sk-ant",
    )
    azure = UpstreamConfig(
        name="azure",
        url="",
        scheme="https",
        host="a",
        port=443,
        base_path="",
        auth_header="api-key",
    )
    out = fwd([(b"api-key", b"client-chosen")], upstream=anthropic)
    assert [(n, v) for n, v in out if n in (b"x-api-key", b"api-key")] == [
        (b"api-key", b"client-chosen"),  # not a credential for this upstream
        (b"x-api-key", b"sk-ant"),
    ]
    # No auth_value: no header at all, and the client still cannot choose one.
    out = fwd([(b"api-key", b"client-chosen")], upstream=azure)
    assert b"api-key" not in {n for n, _ in out}
    assert b"authorization" not in {n for n, _ in out}


def test_wallet_principal() -> None:
    out = fwd([], principal=WALLET)
    assert out[-2:] == [
        (b"x-arouter-tenant", b"wallet:eip155:8453:0xAb"),
        (b"x-arouter-wallet", b"eip155:8453:0xAb"),
    ]
    assert b"x-arouter-key-id" not in {n for n, _ in out}


@pytest.mark.parametrize(
    ("headers", "content_length", "framing"),
    [
        pytest.param([], None, [], id="no-body"),
        pytest.param([(b"content-length", b"3")], 3, [(b"content-length", b"3")], id="length"),
        pytest.param([(b"content-length", b"3")], 10, [(b"content-length", b"10")], id="rewritten"),
        pytest.param(
            [(b"transfer-encoding", b"chunked")],
            None,
            [(b"transfer-encoding", b"chunked")],
            id="chunked-stays-chunked",
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked")],
            42,
            [(b"content-length", b"42")],
            id="buffered-chunked",
        ),
    ],
)
def test_body_framing(headers: Headers, content_length: int | None, framing: Headers) -> None:
    out = fwd(headers, content_length=content_length)
    assert [(n, v) for n, v in out if n in (b"content-length", b"transfer-encoding")] == framing


def test_websocket_upgrade() -> None:
    client = [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"realtime, openai-insecure-api-key." + CLIENT_KEY),
        (b"sec-websocket-protocol", b"OpenAI-Insecure-Api-Key.x,openai-beta.realtime-v1"),
    ]
    out = fwd(client, content_length=None, websocket=True)
    assert out[:7] == [
        (b"host", b"api.openai.com"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"realtime"),
        (b"sec-websocket-protocol", b"openai-beta.realtime-v1"),
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
    ]
    assert all(CLIENT_KEY not in v for _, v in out)


def test_ws_key_only_subprotocol_dropped() -> None:
    out = fwd([(b"sec-websocket-protocol", b"openai-insecure-api-key." + CLIENT_KEY)])
    assert b"sec-websocket-protocol" not in {n for n, _ in out}


def test_response_headers() -> None:
    upstream = [
        (b"content-type", b"text/event-stream"),
        (b"content-length", b"12"),
        (b"connection", b"keep-alive, x-drop-me, content-length, content-type"),
        (b"x-drop-me", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"x-request-id", b"req_upstream"),
        (b"openai-processing-ms", b"12"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"proxy-authenticate", b"Basic"),
        (b"upgrade", b"h2"),
    ]
    assert response_headers(upstream, request_id="req-1") == [
        (b"content-type", b"text/event-stream"),
        (b"content-length", b"12"),
        (b"openai-processing-ms", b"12"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-request-id", b"req-1"),
    ]


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked", b"gzip, chunked"])
def test_response_framed_by_length_and_coding_loses_its_length(coding: bytes) -> None:
    # read chunked by h11 (RFC 9112 §6.3); a relayed length would not be the body's
    upstream = [(b"content-length", b"12"), (b"transfer-encoding", coding), (b"x-a", b"1")]
    assert response_headers(upstream, request_id="r") == [(b"x-a", b"1"), (b"x-request-id", b"r")]


def test_response_headers_websocket() -> None:
    upstream = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]
    assert response_headers(upstream, request_id="r", websocket=True) == [
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"x-request-id", b"r"),
    ]


def test_connection_tokens() -> None:
    headers = [(b"connection", b" Keep-Alive ,, X-A"), (b"connection", b"close")]
    assert connection_tokens(headers) == frozenset({b"keep-alive", b"x-a", b"close"})


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [
        pytest.param([(b"x-request-id", b"abc-123")], "abc-123", id="kept"),
        pytest.param([(b"x-request-id", b"a" * 200)], "a" * 200, id="200"),
        pytest.param([(b"x-request-id", b"a" * 201)], None, id="201"),
        pytest.param([(b"x-request-id", b"")], None, id="empty"),
        pytest.param([(b"x-request-id", b"a b")], None, id="space"),
        pytest.param([(b"x-request-id", b"caf\xc3\xa9")], None, id="non-ascii"),
        pytest.param([(b"x-request-id", b"a\x7f")], None, id="del"),
        pytest.param([], None, id="absent"),
        pytest.param([(b"x-request-id", b"one"), (b"x-request-id", b"two")], "one", id="first"),
    ],
)
def test_request_id_from(headers: Headers, request_id: str | None) -> None:
    assert request_id_from(headers) == request_id


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        pytest.param("203.0.113.7", [b"1.1.1.1"], ("203.0.113.7", False), id="untrusted-peer"),
        pytest.param("10.0.0.1", [], ("10.0.0.1", True), id="trusted-no-xff"),
        pytest.param("10.0.0.1", [b"198.51.100.1"], ("198.51.100.1", True), id="one-hop"),
        pytest.param(
            "10.0.0.1",
            [b"6.6.6.6, 198.51.100.1, 10.0.0.9"],
            ("198.51.100.1", True),
            id="right-most-untrusted",
        ),
        pytest.param(
            "10.0.0.1",
            [b"6.6.6.6", b"198.51.100.1", b"10.0.0.9"],
            ("198.51.100.1", True),
            id="several-lines",
        ),
        pytest.param("10.0.0.1", [b"10.1.1.1, 10.0.0.9"], ("10.1.1.1", True), id="all-trusted"),
        pytest.param(
            "10.0.0.1", [b"garbage, 10.0.0.9"], ("10.0.0.9", True), id="garbage-stops-at-hop"
        ),
        pytest.param("10.0.0.1", [b"unknown"], ("10.0.0.1", True), id="garbage-only"),
        pytest.param("10.0.0.1", [b"198.51.100.1:5555"], ("198.51.100.1", True), id="v4-port"),
        pytest.param("10.0.0.1", [b"[2001:db8::1]:5555"], ("2001:db8::1", True), id="v6-port"),
        pytest.param("fd00::1", [b"2001:db8::1"], ("2001:db8::1", True), id="v6-peer"),
        pytest.param("::ffff:10.0.0.1", [b"1.2.3.4"], ("1.2.3.4", True), id="v4-mapped-peer"),
        pytest.param("::ffff:1.2.3.4", [], ("1.2.3.4", False), id="v4-mapped-untrusted"),
        pytest.param("not-an-ip", [b"1.2.3.4"], ("not-an-ip", False), id="unix-socket"),
    ],
)
def test_client_address(peer: str, xff: list[bytes], expected: tuple[str, bool]) -> None:
    headers = [(b"x-forwarded-for", v) for v in xff]
    assert client_address(peer, headers, TRUSTED) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [b"connection", b"authorization", b"x-api-key", b"x-arouter-x", b"a", b"te"]
            ),
            st.binary(max_size=20),
        ),
        max_size=6,
    )
)
def test_upstream_headers_fuzz(headers: Headers) -> None:
    out = fwd(headers)
    names = [n for n, _ in out]
    assert names.count(b"authorization") == 1
    assert names.count(b"host") == 1
    assert b"x-api-key" not in names
    assert b"te" not in names
    assert out[-len(TAIL) :] == TAIL
