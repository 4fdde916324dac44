"""Single requests that once stopped the daemon or got around the policy (SPEC §5, §6, §13).

Each test here failed against the code before the hardening issue: HEAD on a
built-in endpoint, CONNECT forwarded, path spellings past a model restriction,
dot segments sent upstream, a restricted key naming no model, multipart bodies
on a ``rewrite_model`` route, admin connections counted as API ones, a fault
inside a request reaching the daemon's nursery.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, cast

import h11
import pytest
import trio
import trio.testing

from aroutd.keytable.table import parse_keytable
from aroutd.shell.connection import ClientConnection
from aroutd.shell.daemon import serve
from aroutd.shell.handler import ConnInfo
from aroutd.shell.runtime import Runtime
from aroutd.shell.server import serve_connection
from aroutd.shell.upstream import UpstreamPool, UpstreamResponse
from aroutd.store.sqlite import SqliteStore

from .oddproxy import h11_events
from .oddupstream import OddUpstream, Script
from .support import (
    Client,
    Keys,
    bearer,
    daemon,
    err,
    make_config,
    new_key,
    only_reply,
    raw_exchange,
    request,
    sha,
)

CHAT = "/v1/chat/completions"
JSON_CT = ("content-type", "application/json")


class FlashKeys(Keys):
    """The support keys plus one limited to google/gemini-2.0-flash."""

    def __init__(self) -> None:
        super().__init__()
        self.flash = new_key()

    def table(self) -> str:
        return (
            super().table()
            + f"""
[[keys]]
id = "flash"
tenant = "acme"
sha256 = "{sha(self.flash)}"
allowed_models = ["google/gemini-2.0-flash"]
"""
        )


# -- HEAD, CONNECT, TRACE ------------------------------------------------------------------


async def test_head_on_healthz_answers_the_get_head_without_a_body(tmp_path: Path) -> None:
    async with daemon(tmp_path, admin_listen=("127.0.0.1", 0)) as h:
        api = {"status": "ok"}
        admin = {"status": "ok", "store": "ok"}  # the admin one reports the state store
        for port, body in ((h.port, api), (h.admin_port, admin)):
            async with Client.open(port) as c:
                head = await c.request("HEAD", "/healthz")
                assert (head.status, head.body) == (200, b"")
                length = len(json.dumps(body, separators=(",", ":")))
                assert head.header(b"content-length") == str(length).encode()  # the GET's
                got = await c.request("GET", "/healthz")  # same connection: framing intact
                assert (got.status, got.json()) == (200, body)
        metrics = await request(h.admin_port, "HEAD", "/metrics")
        assert (metrics.status, metrics.body) == (200, b"")


async def test_head_on_an_error_and_a_route(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h, Client.open(h.port) as c:
        denied = await c.request("HEAD", "/v1/models")
        assert (denied.status, denied.body) == (401, b"")
        relayed = await c.request("HEAD", "/v1/models", [bearer(h.keys.api)])
        assert (relayed.status, relayed.body) == (200, b"")
        assert [(r.method, r.target) for r in h.upstream.requests] == [(b"HEAD", b"/v1/models")]
        again = await c.request("GET", "/healthz")
        assert again.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n", id="connect"
        ),
        pytest.param(b"CONNECT /v1/models HTTP/1.1\r\nhost: t\r\n", id="connect-origin-form"),
        pytest.param(b"TRACE /v1/models HTTP/1.1\r\nhost: t\r\n", id="trace"),
    ],
)
async def test_connect_and_trace_are_405_never_forwarded(tmp_path: Path, head: bytes) -> None:
    async with daemon(tmp_path) as h:
        auth = f"authorization: Bearer {h.keys.api}\r\nconnection: close\r\n\r\n".encode()
        reply = only_reply(await raw_exchange(h.port, head + auth))
        assert reply.status == 405
        assert reply.json() == err("method not allowed", "invalid_request_error")
        assert reply.header(b"content-type") == b"application/json"
        assert h.upstream.requests == []


# -- one path per resource ---------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/v1beta/%6Dodels/gemini-pro:generateContent", id="pct-in-models"),
        pytest.param("/v1beta/models/%67emini-pro:generateContent", id="pct-in-model"),
        pytest.param("/%76%31beta/models/gemini-pro:generateContent", id="pct-in-version"),
        pytest.param("/v1beta/models/gemini-pro%3AgenerateContent", id="pct-colon"),
    ],
)
async def test_spellings_of_a_gemini_path_meet_the_model_rule(tmp_path: Path, target: str) -> None:
    keys = FlashKeys()
    async with daemon(tmp_path, keys=keys) as h:
        reply = await request(h.port, "POST", target, [bearer(keys.flash), JSON_CT], b"{}")
        if target.endswith("%3AgenerateContent"):  # no ':' left: not a Gemini path, no route
            assert (reply.status, reply.json()) == (404, err("not found", "not_found_error"))
        else:
            message = "model 'google/gemini-pro' is not allowed for this API key"
            assert (reply.status, reply.json()) == (403, err(message, "forbidden_error"))
        assert h.upstream.requests == []


async def test_an_allowed_spelling_is_forwarded_normalized(tmp_path: Path) -> None:
    keys = FlashKeys()
    async with daemon(tmp_path, keys=keys) as h:
        target = "/v1beta/%6Dodels/gemini-2.0-flash:generateContent?alt=sse"
        reply = await request(h.port, "POST", target, [bearer(keys.flash), JSON_CT], b"{}")
        assert reply.status == 200
        assert reply.json()["target"] == "/v1beta/models/gemini-2.0-flash:generateContent?alt=sse"


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/v1/../x", id="dotdot"),
        pytest.param("/v1/chat/../../admin", id="dotdot-twice"),
        pytest.param("/v1beta/./models/gemini-pro:generateContent", id="dot-gemini"),
        pytest.param("/v1beta/x/../models/gemini-pro:generateContent", id="dotdot-gemini"),
        pytest.param("/v1/%2e%2e/x", id="encoded-dotdot"),
        pytest.param("/openai/v1/%2E%2E/%2E%2E/x", id="strip-prefix-route"),
        pytest.param("/v1/a%2Fb", id="encoded-slash"),
        pytest.param("/v1/a%5Cb", id="encoded-backslash"),
        pytest.param("/v1/a%00b", id="encoded-nul"),
    ],
)
async def test_dot_segments_and_hidden_separators_are_400(tmp_path: Path, target: str) -> None:
    keys = FlashKeys()
    async with daemon(tmp_path, keys=keys) as h:
        for key in (h.keys.api, keys.flash):
            reply = await request(h.port, "POST", target, [bearer(key), JSON_CT], b"{}")
            assert reply.status == 400
            assert reply.json() == err("invalid request path", "invalid_request_error")
        assert h.upstream.requests == []


async def test_healthz_has_one_spelling_too(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        reply = await request(h.port, "GET", "/%68ealthz")
        assert (reply.status, reply.json()) == (200, {"status": "ok"})


# -- a restricted key names its model ----------------------------------------------------


async def test_a_model_restricted_key_must_name_a_model(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        narrow = [bearer(h.keys.narrow), JSON_CT]
        body = json.dumps({"prompt": "a cat"}).encode()
        images = await request(h.port, "POST", "/v1/images/generations", narrow, body)
        assert images.status == 403
        assert images.json() == err("this API key requires a model to be named", "forbidden_error")
        assert h.upstream.requests == []
        listing = await request(h.port, "GET", "/v1/models", narrow)  # no body: provider only
        assert listing.status == 200
        named = json.dumps({"model": "gpt-4o-mini", "prompt": "a cat"}).encode()
        ok = await request(h.port, "POST", "/v1/images/generations", narrow, named)
        assert ok.status == 200
        unrestricted = await request(
            h.port, "POST", "/v1/images/generations", [bearer(h.keys.api)], body
        )
        assert unrestricted.status == 200
        assert [r.target for r in h.upstream.requests] == [
            b"/v1/models",
            b"/v1/images/generations",
            b"/v1/images/generations",
        ]


async def test_a_realtime_handshake_without_a_model_is_refused(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        head = (
            "GET /v1/realtime HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\n"
            "connection: Upgrade\r\nsec-websocket-version: 13\r\n"
            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"authorization: Bearer {h.keys.narrow}\r\n\r\n"
        )
        reply = only_reply(await raw_exchange(h.port, head.encode(), allow_timeout=True))
        assert reply.status == 403
        assert reply.json() == err("this API key requires a model to be named", "forbidden_error")
        assert h.upstream.requests == []


# -- multipart on a rewrite_model route ----------------------------------------------------


async def test_audio_upload_on_a_rewrite_model_route(tmp_path: Path) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="model"\r\n\r\nopenai/whisper-1\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\nRIFF\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    ct = ("content-type", f"multipart/form-data; boundary={boundary}")
    async with daemon(tmp_path) as h:
        target = "/openai/v1/audio/transcriptions"
        reply = await request(h.port, "POST", target, [bearer(h.keys.api), ct], body)
        assert reply.status == 200, reply.body
        (seen,) = h.upstream.requests
        assert seen.target == b"/v1/audio/transcriptions"
        assert seen.body == body.replace(b"openai/whisper-1", b"whisper-1")
        assert seen.header(b"content-length") == str(len(seen.body)).encode()


# -- admin connections are not API connections ---------------------------------------------


async def test_healthz_answers_when_the_api_is_full(tmp_path: Path) -> None:
    full = daemon(tmp_path, max_connections=1, admin_listen=("127.0.0.1", 0))
    async with full as h, Client.open(h.port) as held:
        assert (await held.request("GET", "/healthz")).status == 200
        refused = await raw_exchange(h.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        assert refused == b""  # beyond max_connections: closed at accept
        for _ in range(3):
            health = await request(h.admin_port, "GET", "/healthz")
            assert (health.status, health.json()) == (200, {"status": "ok", "store": "ok"})
        metrics = await request(h.admin_port, "GET", "/metrics")
        assert b"\naroutd_open_connections 1\n" in metrics.body


# -- the fault barrier ---------------------------------------------------------------------


class _Fault(Exception):
    """A bug: something our code never expected to raise."""


class _FaultyPool(UpstreamPool):
    """A fake upstream client that raises where a bug would: before or after the head."""

    def __init__(self, pool: UpstreamPool, *, after_head: bool) -> None:
        super().__init__(pool.config)
        self.after_head = after_head

    @asynccontextmanager
    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        **_: object,
    ) -> AsyncIterator[UpstreamResponse]:
        if not self.after_head:
            raise _Fault("not a message anyone should see: lr_live_secret")
        yield cast(UpstreamResponse, _FaultyResponse())


class _FaultyResponse:
    status = 200
    reason = b"OK"
    headers: ClassVar = [(b"content-type", b"text/event-stream")]

    async def iter_batches(self) -> AsyncIterator[tuple[list[bytes], bool]]:
        yield [b"data: 1\n\n"], False
        raise _Fault("mid-stream")


async def _faulty_runtime(tmp: Path, keys: Keys, *, after_head: bool) -> Runtime:
    cfg = make_config(tmp, 9, keys)
    table = parse_keytable(keys.table(), path=tmp / "keys.toml")
    rt = Runtime.build(cfg, table, SqliteStore.open(tmp / "state.db"), None)
    rt.pools["fake"] = _FaultyPool(rt.pools["fake"], after_head=after_head)
    return rt


async def _exchange(rt: Runtime, data: bytes) -> bytes:
    client, server = trio.testing.memory_stream_pair()
    out = b""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, rt, server, ConnInfo("127.0.0.1", "http"))
            await client.send_all(data)
            while chunk := await client.receive_some(65536):
                out += chunk
    return out


def _chat(key: str) -> bytes:
    body = b'{"model":"gpt-4o"}'
    return (
        f"POST {CHAT} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_a_fault_before_the_answer_is_a_500(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    keys = Keys()
    rt = await _faulty_runtime(tmp_path, keys, after_head=False)
    out = await _exchange(rt, _chat(keys.api) + b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
    reply = only_reply(out)  # the connection closes after the 500: the pipelined one waits
    assert reply.status == 500
    assert reply.json() == err("internal error", "server_error")
    assert reply.header(b"connection") == b"close"
    assert reply.header(b"x-request-id") is not None
    assert rt.metrics.internal_errors["request"] == 1
    assert 'aroutd_internal_errors_total{where="request"} 1' in rt.metrics.render(
        open_connections=0, keys_loaded=0
    )
    logged = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    faults = [e for e in logged if e.get("event") == "internal_error"]
    assert len(faults) == 1
    assert faults[0]["error"] == "_Fault" and faults[0]["where"] == "request"
    assert faults[0]["request_id"] == reply.header(b"x-request-id").decode()  # type: ignore[union-attr]
    assert "lr_live_" not in json.dumps(logged)  # the exception's text is never logged
    again = only_reply(
        await _exchange(rt, b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    )
    assert again.status == 200


async def test_a_fault_after_the_head_cuts_the_answer(tmp_path: Path) -> None:
    keys = Keys()
    rt = await _faulty_runtime(tmp_path, keys, after_head=True)
    out = await _exchange(rt, _chat(keys.api))
    events = h11_events(out)
    assert isinstance(events[0], h11.Response) and events[0].status_code == 200
    assert [e.data for e in events[1:] if isinstance(e, h11.Data)] == [b"data: 1\n\n"]
    assert len(events) == 2  # then cut: no final chunk, no end of message
    assert rt.metrics.internal_errors["request"] == 1


async def test_a_fault_outside_a_request_ends_that_connection_only(tmp_path: Path) -> None:
    rt = await _faulty_runtime(tmp_path, Keys(), after_head=True)

    async def broken(
        rt: Runtime, client: ClientConnection, req: h11.Request, info: ConnInfo
    ) -> bool:
        raise _Fault("a handler bug")

    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:  # would re-raise if the fault escaped
            nursery.start_soon(serve_connection, rt, server, ConnInfo("127.0.0.1", "http"), broken)
            await client.send_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            assert await client.receive_some(65536) == b""  # closed
    assert rt.metrics.internal_errors["connection"] == 1


# -- a WebSocket handshake the upstream refuses ---------------------------------------------

_WS_HEAD = (
    "GET /v1/realtime/{name}?model=gpt-4o HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\n"
    "connection: Upgrade\r\nsec-websocket-version: 13\r\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer {key}\r\n\r\n"
)


@pytest.mark.parametrize(
    ("script", "status", "body", "whole"),
    [
        pytest.param(
            Script(answer=b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope"),
            401,
            b"nope",
            True,
            id="refused",
        ),
        pytest.param(
            Script(
                answer=b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 40\r\n\r\nno",
                keep_alive=False,
            ),
            401,
            b"no",
            False,
            id="short-body-then-close",
        ),
        pytest.param(
            Script(answer=b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 40\r\n\r\nno"),
            426,
            b"no",
            False,
            id="short-body-then-silence",
        ),
        pytest.param(
            Script(answer=b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n", keep_alive=False),
            502,
            b'{"error":{"message":"upstream request failed","type":"server_error"}}',
            True,
            id="head-cut",
        ),
    ],
)
async def test_a_refused_websocket_handshake_is_relayed_or_cut(
    tmp_path: Path, script: Script, status: int, body: bytes, whole: bool
) -> None:
    up = OddUpstream()
    async with trio.open_nursery() as nursery:
        await nursery.start(up.serve)
        keys = Keys()
        cfg = make_config(tmp_path, up.port, keys)
        fake = replace(cfg.upstreams["fake"], read_timeout_s=0.5)
        bound = await nursery.start(serve, replace(cfg, upstreams={"fake": fake}))
        port = bound.addresses[0][1]
        up.scripts["ws"] = script
        head = _WS_HEAD.format(name="ws", key=keys.api).encode()
        with trio.fail_after(5):  # once: a refusal body read without a bound or timeout;
            # a whole answer keeps the connection (a cut one is closed)
            out = await raw_exchange(port, head, read_timeout=2, allow_timeout=whole)
        events = h11_events(out)
        assert isinstance(events[0], h11.Response) and events[0].status_code == status
        assert isinstance(events[1], h11.Data) and events[1].data == body
        # whole: the answer's end came; cut: never a truncated success
        assert isinstance(events[-1], h11.EndOfMessage) is whole and len(events) == 2 + whole
        health = await request(port, "GET", "/healthz")
        assert (health.status, health.json()) == (200, {"status": "ok"})
        nursery.cancel_scope.cancel()


async def test_an_upstreams_401_is_not_counted_as_our_auth_failure(tmp_path: Path) -> None:
    up = OddUpstream()
    async with trio.open_nursery() as nursery:
        await nursery.start(up.serve)
        keys = Keys()
        cfg = make_config(tmp_path, up.port, keys, admin_listen=("127.0.0.1", 0))
        bound = await nursery.start(serve, cfg)
        port, admin = bound.addresses[0][1], bound.admin[0][1]
        # cut mid-body, so our access record says "upstream broke mid-response"
        up.scripts["u401"] = Script(
            answer=b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 40\r\n\r\nno", keep_alive=False
        )
        head = f"GET /v1/x/u401 HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {keys.api}\r\n\r\n"
        cut = await raw_exchange(port, head.encode())
        assert cut.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and cut.endswith(b"no")
        await request(port, "GET", "/v1/models", [bearer(new_key())])  # ours: invalid api key
        text = (await request(admin, "GET", "/metrics")).body.decode()
        failures = [line for line in text.splitlines() if line.startswith("aroutd_auth_failures")]
        assert failures == ['aroutd_auth_failures_total{reason="invalid api key"} 1']
        nursery.cancel_scope.cancel()
