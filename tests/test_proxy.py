"""The proxy on loopback: auth, authorization, forwarding, relaying, upstream failures.

The daemon runs in-process (``support.daemon``) in front of a recording fake
upstream; clients are real h11 clients over real sockets.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import trio

from .support import Client, Reply, bearer, daemon, err, request, unused_port


def echo(method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """What the fake upstream answers by default: the request it received."""
    return {"method": method, "target": target, "body": body.decode()}


def assert_error(r: Reply, status: int, message: str, type_: str) -> None:
    """One of our own errors (SPEC §13)."""
    assert (r.status, r.json()) == (status, err(message, type_)), r.body
    assert r.header(b"content-type") == b"application/json"


def _get_head(target: str, key: str) -> str:
    return f"GET {target} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\r\n"


CHAT = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def test_healthz_needs_no_auth(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "GET", "/healthz")
        assert (r.status, r.json()) == (200, {"status": "ok"})
        assert r.header(b"content-type") == b"application/json"


@pytest.mark.parametrize(
    ("headers", "target", "status", "message"),
    [
        pytest.param(
            [], "/v1/chat/completions", 401, "missing or invalid Authorization header", id="none"
        ),
        pytest.param(
            [("authorization", "Basic abc")],
            "/v1/models",
            401,
            "missing or invalid Authorization header",
            id="basic",
        ),
        pytest.param(
            [bearer("lr_live_" + "0" * 48)], "/v1/models", 401, "invalid api key", id="unknown"
        ),
        pytest.param([bearer("sk-whatever")], "/v1/models", 401, "invalid api key", id="foreign"),
        pytest.param(
            [bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")],
            "/v1/models",
            401,
            "invalid or expired token",
            id="bad-jwt",
        ),
    ],
)
async def test_authentication_failures(
    tmp_path: Path, headers: list[tuple[str, str]], target: str, status: int, message: str
) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "POST", target, headers, CHAT)
        assert r.status == status
        assert r.json() == err(message, "authentication_error")
        assert r.header(b"content-type") == b"application/json"
        assert h.upstream.requests == []


async def test_disabled_expired_and_conflicting_keys(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        for key in (h.keys.disabled, h.keys.expired):
            r = await request(h.port, "GET", "/v1/models", [bearer(key)])
            assert_error(r, 401, "invalid api key", "authentication_error")
        r = await request(
            h.port, "GET", "/v1/models", [bearer(h.keys.api), ("x-api-key", h.keys.narrow)]
        )
        assert_error(r, 401, "conflicting credentials", "authentication_error")
        assert h.upstream.requests == []
        r = await request(
            h.port, "GET", "/v1/models", [bearer(h.keys.api), ("x-api-key", h.keys.api)]
        )
        assert (r.status, r.json()) == (200, echo("GET", "/v1/models"))
        [up] = h.upstream.requests
        assert up.header(b"x-arouter-key-id") == b"main"
        assert b"x-api-key" not in up.names()


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("bearer", id="bearer"),
        pytest.param("x-api-key", id="x-api-key"),
        pytest.param("x-goog-api-key", id="x-goog-api-key"),
        pytest.param("query", id="query"),
    ],
)
async def test_forwarded_request_is_clean(tmp_path: Path, how: str) -> None:
    async with daemon(tmp_path) as h:
        key = h.keys.api
        headers = [
            ("x-arouter-tenant", "evil"),
            ("x-arouter-key-id", "evil"),
            ("x-custom", "kept"),
            ("connection", "x-hop"),
            ("x-hop", "dropped"),
            ("x-forwarded-for", "6.6.6.6"),
        ]
        target = "/v1/chat/completions?a=1"
        if how == "bearer":
            headers.append(bearer(key))
        elif how == "query":
            target += f"&key={key}&b=2"
        else:
            headers.append((how, key))
        r = await request(h.port, "POST", target, headers, CHAT)
        assert r.status == 200, r.body
        forwarded = "/v1/chat/completions?a=1&b=2" if how == "query" else "/v1/chat/completions?a=1"
        assert r.json() == echo("POST", forwarded, CHAT)
        assert r.header(b"x-upstream") == b"fake"
        assert r.header(b"x-drop-me") is None  # named in the upstream's Connection header
        rid = r.header(b"x-request-id")
        assert rid and len(rid) == 32
        [up] = h.upstream.requests
        assert up.target == forwarded.encode()
        assert up.header(b"authorization") == b"Bearer upstream-secret"
        assert b"x-api-key" not in up.names() and b"x-goog-api-key" not in up.names()
        assert key.encode() not in b"".join(n + v for n, v in up.headers) + up.target
        assert up.header(b"x-arouter-tenant") == b"acme"
        assert up.header(b"x-arouter-key-id") == b"main"
        assert up.header(b"x-custom") == b"kept"
        assert up.header(b"x-hop") is None
        assert up.header(b"x-forwarded-for") == b"127.0.0.1"
        assert up.header(b"x-forwarded-proto") == b"http"
        assert up.header(b"x-request-id") == rid
        assert up.header(b"host") == f"127.0.0.1:{h.upstream.port}".encode()
        assert up.body == CHAT


async def test_request_id_is_kept(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(
            h.port, "GET", "/v1/models", [bearer(h.keys.api), ("x-request-id", "abc-123")]
        )
        assert (r.status, r.json()) == (200, echo("GET", "/v1/models"))
        assert r.header(b"x-request-id") == b"abc-123"
        [up] = h.upstream.requests
        assert up.header(b"x-request-id") == b"abc-123"


async def test_query_key_refused_when_disabled(tmp_path: Path) -> None:
    async with daemon(tmp_path, allow_query_key=False) as h:
        r = await request(h.port, "GET", f"/v1/models?key={h.keys.api}")
        assert_error(r, 401, "missing or invalid Authorization header", "authentication_error")
        assert h.upstream.requests == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param({"model": "gpt-4o-mini"}, 200, None, id="allowed-bare"),
        pytest.param({"model": "openai/gpt-4o-mini"}, 200, None, id="allowed-prefixed"),
        pytest.param(
            {"model": "gpt-4o"},
            403,
            "model 'openai/gpt-4o' is not allowed for this API key",
            id="model",
        ),
        pytest.param(
            {"model": "anthropic/claude-3"},
            403,
            "provider 'anthropic' is not allowed for this API key",
            id="provider",
        ),
    ],
)
async def test_model_restrictions(
    tmp_path: Path, body: dict[str, str], status: int, message: str | None
) -> None:
    async with daemon(tmp_path) as h:
        raw = json.dumps(body).encode()
        r = await request(h.port, "POST", "/v1/chat/completions", [bearer(h.keys.narrow)], raw)
        if message is None:
            assert (r.status, r.json()) == (status, echo("POST", "/v1/chat/completions", raw))
            [up] = h.upstream.requests
            assert (up.target, up.body) == (b"/v1/chat/completions", raw)
            assert up.header(b"x-arouter-key-id") == b"narrow"
        else:
            assert_error(r, status, message, "forbidden_error")
            assert h.upstream.requests == []


async def test_gemini_path_model_and_provider(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(
            h.port,
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            [("x-goog-api-key", h.keys.narrow)],
            b"{}",
        )
        assert_error(r, 403, "provider 'google' is not allowed for this API key", "forbidden_error")
        assert h.upstream.requests == []
        r = await request(
            h.port,
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            [("x-goog-api-key", h.keys.api)],
            b"{}",
        )
        target = "/v1beta/models/gemini-2.0-flash:generateContent"
        assert (r.status, r.json()) == (200, echo("POST", target, b"{}"))
        [up] = h.upstream.requests
        assert (up.target, up.body) == (target.encode(), b"{}")
        assert up.header(b"x-goog-api-key") is None


async def test_bad_bodies(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(
            h.port,
            "POST",
            "/v1/chat/completions",
            [bearer(h.keys.api)],
            b'{"model":"a","model":"b"}',
        )
        assert_error(r, 400, "duplicate model field", "invalid_request_error")
        r = await request(h.port, "POST", "/v1/chat/completions", [bearer(h.keys.api)], b"{nope")
        assert_error(r, 400, "invalid JSON body", "invalid_request_error")
        assert h.upstream.requests == []


async def test_management_key_refused_on_inference(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "POST", "/v1/chat/completions", [bearer(h.keys.mgmt)], CHAT)
        assert_error(r, 403, "management keys cannot call inference endpoints", "forbidden_error")
        r = await request(h.port, "GET", "/api/v1/keys", [bearer(h.keys.api)])
        assert_error(r, 403, "this endpoint requires a management key", "forbidden_error")
        assert h.upstream.requests == []


async def test_unknown_path_is_404(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "GET", "/nope")
        assert_error(r, 404, "not found", "not_found_error")
        assert h.upstream.requests == []


async def test_strip_prefix(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "POST", "/openai/v1/chat/completions", [bearer(h.keys.api)], CHAT)
        assert (r.status, r.json()) == (200, echo("POST", "/v1/chat/completions", CHAT))
        [up] = h.upstream.requests
        assert (up.target, up.body) == (b"/v1/chat/completions", CHAT)


async def test_keep_alive_reuses_both_sides(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h, Client.open(h.port) as c:
        for _ in range(5):
            r = await c.request("POST", "/v1/chat/completions", [bearer(h.keys.api)], CHAT)
            assert (r.status, r.json()) == (200, echo("POST", "/v1/chat/completions", CHAT))
        assert [(u.target, u.body) for u in h.upstream.requests] == [
            (b"/v1/chat/completions", CHAT)
        ] * 5
        assert h.upstream.connections == 1


async def test_upstream_error_status_relayed_unchanged(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "GET", "/v1/status-418", [bearer(h.keys.api)])
        assert (r.status, r.body) == (418, b'{"error":{"message":"teapot","type":"upstream"}}')
        assert r.header(b"content-type") == b"application/json"
        [up] = h.upstream.requests
        assert up.target == b"/v1/status-418"


async def test_sse_events_arrive_one_by_one(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        req = (
            f"GET /v1/sse HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {h.keys.api}\r\n\r\n"
        ).encode()
        await stream.send_all(req)
        arrivals: list[tuple[float, bytes]] = []
        buf = b""
        with trio.fail_after(5):
            while b"[DONE]" not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk
                buf += chunk
                arrivals.append((trio.current_time(), chunk))
        await stream.aclose()
        assert b"transfer-encoding: chunked" in buf.lower()
        events = [c for _, c in arrivals if b"data: {" in c]
        assert len(events) >= 4  # the 50 ms gaps keep events in separate reads: no buffering
        assert buf.count(b"data: ") == 6


async def test_upstream_close_before_head_is_502(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = await request(h.port, "GET", "/v1/close-before-head", [bearer(h.keys.api)])
        assert_error(r, 502, "upstream request failed", "server_error")
        # a fresh connection, not a pooled one: no retry (SPEC §6)
        assert [u.target for u in h.upstream.requests] == [b"/v1/close-before-head"]


async def test_upstream_connect_refused_is_502(tmp_path: Path) -> None:
    async with daemon(tmp_path, upstream_port=unused_port()) as h:
        with trio.fail_after(1.5):  # refused at once, not the 2 s connect timeout
            r = await request(h.port, "POST", "/v1/chat/completions", [bearer(h.keys.api)], CHAT)
        assert_error(r, 502, "upstream request failed", "server_error")
        assert (h.upstream.requests, h.upstream.connections) == ([], 0)


async def test_upstream_silence_is_504(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        with trio.fail_after(10):
            r = await request(h.port, "GET", "/v1/slow-head", [bearer(h.keys.api)])
        assert_error(r, 504, "upstream timeout", "server_error")
        assert [u.target for u in h.upstream.requests] == [b"/v1/slow-head"]


async def test_upstream_death_mid_body_cuts_the_client(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        raw = _get_head("/v1/die-mid-body", h.keys.api)
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        await stream.send_all(raw.encode())
        buf = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        assert b"content-length: 100" in head.lower()
        assert len(body) == 10  # short of its content-length: the client sees an error


async def test_client_disconnect_cancels_upstream(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        raw = _get_head("/v1/hang-mid-body", h.keys.api)
        await stream.send_all(raw.encode())
        buf = b""
        while b"first" not in buf:
            buf += await stream.receive_some(65536)
        await stream.aclose()
        with trio.fail_after(3):
            await h.upstream.cancelled.wait()


async def test_failed_auth_is_slowed_down(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h, Client.open(h.port) as c:
        for _ in range(20):
            r = await c.request("GET", "/v1/models", [bearer("lr_live_" + "1" * 48)])
            assert_error(r, 401, "invalid api key", "authentication_error")
        r = await c.request("GET", "/v1/models", [bearer(h.keys.api)])
        assert_error(r, 429, "too many failed authentication attempts", "rate_limit_error")
        retry = r.header(b"retry-after")
        assert retry is not None and 1 <= int(retry) <= 60
        assert h.upstream.requests == []


async def test_https_upstream_with_ca_file(tmp_path: Path) -> None:
    async with daemon(tmp_path, upstream_tls=True) as h, Client.open(h.port) as c:
        for _ in range(3):
            r = await c.request("POST", "/v1/chat/completions", [bearer(h.keys.api)], CHAT)
            assert (r.status, r.json()) == (200, echo("POST", "/v1/chat/completions", CHAT))
        assert [u.body for u in h.upstream.requests] == [CHAT] * 3
        assert h.upstream.connections == 1  # TLS connection kept alive in the pool


async def test_https_upstream_not_trusted_is_502(tmp_path: Path) -> None:
    async with daemon(tmp_path, upstream_tls=True, trust_upstream=False) as h:
        r = await request(h.port, "GET", "/v1/models", [bearer(h.keys.api)])
        assert_error(r, 502, "upstream request failed", "server_error")
        assert h.upstream.requests == []


async def test_rewrite_model_forwards_the_bare_name(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        body = b'{"model": "openai/gpt-4o", "messages": [], "n": 1}'
        r = await request(h.port, "POST", "/openai/v1/chat/completions", [bearer(h.keys.api)], body)
        forwarded = b'{"model": "gpt-4o", "messages": [], "n": 1}'
        assert (r.status, r.json()) == (200, echo("POST", "/v1/chat/completions", forwarded))
        [up] = h.upstream.requests
        assert up.body == forwarded
        assert up.header(b"content-length") == str(len(up.body)).encode()


async def test_x_forwarded_for_from_trusted_proxy_is_appended(tmp_path: Path) -> None:
    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    async with daemon(tmp_path, trusted_proxies=trusted) as h:
        xff = ("x-forwarded-for", "203.0.113.7")
        r = await request(h.port, "GET", "/v1/models", [bearer(h.keys.api), xff])
        assert (r.status, r.json()) == (200, echo("GET", "/v1/models"))
        [up] = h.upstream.requests
        assert up.header(b"x-forwarded-for") == b"203.0.113.7, 127.0.0.1"


async def test_x_forwarded_for_from_untrusted_peer_is_replaced(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        xff = ("x-forwarded-for", "203.0.113.7")
        r = await request(h.port, "GET", "/v1/models", [bearer(h.keys.api), xff])
        assert (r.status, r.json()) == (200, echo("GET", "/v1/models"))
        [up] = h.upstream.requests
        assert up.header(b"x-forwarded-for") == b"127.0.0.1"


async def test_upstream_port_closed_is_502(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        h.upstream.stop()
        await trio.sleep(0.05)
        r = await request(h.port, "GET", "/v1/models", [bearer(h.keys.api)])
        assert_error(r, 502, "upstream request failed", "server_error")
        assert h.upstream.requests == []


async def test_stale_pooled_connection_is_retried_on_a_fresh_one(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h, Client.open(h.port) as c:
        for _ in range(3):
            r = await c.request("POST", "/v1/answer-then-close", [bearer(h.keys.api)], CHAT)
            await trio.sleep(0.05)  # the upstream's close reaches the pooled socket
            assert (r.status, r.body) == (200, b"ok")
        # each sent once: no duplicate after the retry
        assert [(u.target, u.body) for u in h.upstream.requests] == [
            (b"/v1/answer-then-close", CHAT)
        ] * 3
        assert h.upstream.connections == 3
