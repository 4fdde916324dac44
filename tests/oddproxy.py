"""The daemon in front of an OddUpstream, and a client that reports exactly what came back.

Shared by tests/test_upstream_odd.py (the table of odd answers, every close
offset) and tests/test_upstream_fuzz.py (arbitrary upstream bytes). Every client
read is bounded by ``trio.fail_after``, so a hang fails the test (:class:`Hang`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h11
import trio

from aroutd.config.parse import Config
from aroutd.shell.daemon import Bound, serve

from .oddupstream import OddUpstream, Seen, answer, chunked, own_body
from .support import Keys, make_config

READ_TIMEOUT_S = 1.0  # the upstream's read_timeout_s: silence cases cost this much
CLIENT_LIMIT_S = READ_TIMEOUT_S + 4.0  # no answer, and no close, within this: a hang
RECEIVE_BYTES = 65536
FUZZ_EXAMPLES = 300
CHAT = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
ERR_502 = {"error": {"message": "upstream request failed", "type": "server_error"}}
ERR_504 = {"error": {"message": "upstream timeout", "type": "server_error"}}
POISON = answer(b"POISON: an answer meant for nobody")
HELLO = answer(b"hello")
HELLO_CHUNKED = answer(
    chunked(b"hel", b"lo"),
    headers=(b"Content-Type: text/plain", b"Transfer-Encoding: chunked"),
    length=False,
)
X100 = answer(b"x" * 100)


# -- the daemon in front of an OddUpstream --------------------------------------------


@dataclass
class Proxy:
    port: int
    keys: Keys = field(repr=False)
    up: OddUpstream
    doing: list[str] = field(default_factory=list)  # what the test did last (for a crash note)
    names: itertools.count[int] = field(default_factory=itertools.count)

    def name(self, prefix: str) -> str:
        """A fresh script name, so each request's upstream records are its own."""
        return f"{prefix}-{next(self.names)}"


async def _serve_noting(
    cfg: Config, doing: list[str], *, task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await serve(cfg, task_status=task_status)
    except BaseException as exc:  # re-raised; a crash (a group) is told what it was serving
        if not isinstance(exc, trio.Cancelled):
            exc.add_note(f"aroutd died while serving: {doing[-1] if doing else 'startup'}")
        raise


@asynccontextmanager
async def proxy(tmp: Path, up: OddUpstream, **upstream: Any) -> AsyncIterator[Proxy]:
    """``up`` and the real daemon in this trio run; ``upstream``: UpstreamConfig overrides."""
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(up.serve)
        keys = Keys()
        cfg = make_config(tmp, up.port, keys)
        fake = replace(cfg.upstreams["fake"], read_timeout_s=READ_TIMEOUT_S, **upstream)
        cfg = replace(cfg, upstreams={"fake": fake})
        px = Proxy(0, keys, up)
        bound: Bound = await nursery.start(_serve_noting, cfg, px.doing)
        px.port = bound.addresses[0][1]
        try:
            yield px
        except Exception as exc:  # the test's own failure: raised bare, not in a group
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


# -- a client that reports exactly what came back -------------------------------------


@dataclass
class Got:
    """What the client received for one request."""

    status: int | None = None  # of the final (non-1xx) response
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False  # the response's end arrived
    cut: bool = False  # the connection closed (or reset) before that
    malformed: str | None = None  # h11 refused the bytes before any close: bad framing
    raw: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    def __str__(self) -> str:
        state = "complete" if self.complete else "cut" if self.cut else self.malformed
        return f"<{self.status} {state} body={self.body[:80]!r} raw={self.raw[:300]!r}>"


class Hang(AssertionError):
    """No end of the answer and no close within CLIENT_LIMIT_S."""


async def ask(port: int, target: str, key: str | None = None, body: bytes = b"") -> Got:
    """One request on a fresh connection; read until its response ends or the daemon closes."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("host", "t")]
    if key is not None:
        headers.append(("authorization", f"Bearer {key}"))
    if body:
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
    method = "POST" if body else "GET"
    out = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if body:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    got = Got()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        with trio.fail_after(CLIENT_LIMIT_S):
            await stream.send_all(out)
            await _read_answer(stream, conn, got)
    except trio.TooSlowError:
        raise Hang(f"{target}: the daemon hangs; after {CLIENT_LIMIT_S} s: {got}") from None
    finally:
        await trio.aclose_forcefully(stream)
    return got


async def _read_answer(stream: trio.SocketStream, conn: h11.Connection, got: Got) -> None:
    eof = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if eof:
                got.cut = True
            else:
                got.malformed = f"h11: {exc}"
            return
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except trio.BrokenResourceError:
                data = b""  # reset by the daemon: a cut like any close
            got.raw += data
            eof = not data
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            got.status, got.headers = event.status_code, list(event.headers)
        elif isinstance(event, h11.Data):
            got.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            got.complete = True
            return
        elif isinstance(event, h11.ConnectionClosed):
            got.cut = True
            return
        # InformationalResponse: skipped, relaying 1xx is the daemon's choice


# -- what the client must get ---------------------------------------------------------


def assert_502(got: Got) -> None:
    assert (got.status, got.complete) == (502, True), f"want 502 upstream request failed: {got}"
    assert json.loads(got.body) == ERR_502
    assert got.header(b"content-type") == b"application/json"


def assert_relayed(got: Got, status: int, body: bytes) -> None:
    """A whole, well-framed answer: ``status`` and exactly ``body``."""
    assert (got.status, got.complete, got.body) == (status, True, body), f"want {status}: {got}"
    te, cl = got.header(b"transfer-encoding"), got.header(b"content-length")
    assert te is None or cl is None, f"both Content-Length and Transfer-Encoding: {got}"
    assert te in (None, b"chunked"), got


def assert_cut(got: Got, status: int, body: bytes) -> None:
    """The head (``status``) was relayed, then a prefix of ``body``, then the connection closed."""
    assert (got.status, got.cut, got.malformed) == (status, True, None), f"want a cut: {got}"
    assert body.startswith(got.body), f"not a prefix of the upstream body: {got}"
    cl = got.header(b"content-length")
    if cl is not None:
        assert len(got.body) < int(cl), f"a truncated answer that looks complete: {got}"
    else:
        chunked = got.header(b"transfer-encoding") == b"chunked"
        assert chunked, f"close-delimited, so a cut looks like a success: {got}"
        assert not got.raw.endswith(b"0\r\n\r\n"), f"a final chunk after a failure: {got}"


async def assert_unharmed(px: Proxy, case: list[Seen], *, reuse: bool | None) -> None:
    """/healthz works and another key's request gets its own answer; ``reuse``: of the case's
    upstream connection (None: either)."""
    px.doing.append("GET /healthz after the case")
    health = await ask(px.port, "/healthz")
    assert (health.status, health.complete) == (200, True), f"/healthz: {health}"
    assert json.loads(health.body) == {"status": "ok"}
    name = px.name("own")
    target = f"/v1/own/{name}"
    px.doing.append(f"GET {target} after the case")
    own = await ask(px.port, target, px.keys.narrow)
    assert_relayed(own, 200, own_body(target.encode()))
    reached = [s.connection for s in px.up.requests_for(name)]
    assert len(reached) == 1, f"the second request reached the upstream on connections {reached}"
    assert px.up.requests_for(name)[0].header(b"x-arouter-key-id") == b"narrow"
    if reuse is not None and case:
        used = case[-1].connection
        assert (reached[0] == used) is reuse, (
            f"upstream connection {used} {'not ' if reuse else ''}reused by the next request"
            f" (it went on connection {reached[0]})"
        )


async def played(px: Proxy, name: str) -> None:
    """Wait until the upstream sent all of its answer: the after-checks then see its effect."""
    with trio.fail_after(CLIENT_LIMIT_S):
        await px.up.played(name)


def assert_forwarded_once(px: Proxy, name: str, *, answered: bool) -> None:
    """The upstream got the request once; twice only if it had sent no byte (SPEC §6 retry)."""
    bodies = [s.body for s in px.up.requests_for(name)]
    once = bodies == [CHAT] or (not answered and bodies == [CHAT, CHAT])
    retried = " (retried after response bytes)" if answered and len(bodies) > 1 else ""
    assert once, f"the upstream saw the request {len(bodies)} times{retried}"


async def warm_pool(px: Proxy) -> None:
    """One clean request first, so the case's request goes out on a pooled connection."""
    target = f"/v1/own/{px.name('warm')}"
    assert_relayed(await ask(px.port, target, px.keys.api), 200, own_body(target.encode()))


def h11_events(data: bytes) -> list[h11.Event]:
    """What h11 makes of ``data`` as the answer to a POST, the upstream closing after it."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("host", "t"), ("content-length", "0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    events: list[h11.Event] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            assert isinstance(event, h11.Event)
            events.append(event)
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError:
        pass
    return events


# -- answers the tests share ----------------------------------------------------------


def head(status: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 " + status, *headers]) + b"\r\n\r\n"


TE = b"Transfer-Encoding: chunked"

SWEEP_BODY = b'{"id":"x","choices":[{"text":"hi"}]}'
SWEEP_LENGTH = answer(SWEEP_BODY, headers=(b"Content-Type: application/json", b"X-Up: 1"))
SWEEP_CHUNKED = head(b"200 OK", b"Content-Type: text/event-stream", TE) + chunked(
    b"data: " + SWEEP_BODY[:18], SWEEP_BODY[18:] + b"\n\n"
)
