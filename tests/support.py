"""Test support: an in-process daemon on loopback, a scriptable fake upstream, a tiny client.

The fake upstream is a real h11 server on 127.0.0.1 that records every request
it receives, so tests assert on exactly what was forwarded. Its behaviour is
chosen by the request path (see ``FakeUpstream._answer``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h11
import trio
import trustme

from aroutd.config.parse import (
    Config,
    KeysConfig,
    RouteConfig,
    ServerConfig,
    StateConfig,
    UpstreamConfig,
    WalletConfig,
    X402Config,
)
from aroutd.shell.daemon import Bound, serve

Headers = list[tuple[bytes, bytes]]


def first_header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase), or None."""
    return next((v for n, v in headers if n.lower() == name), None)


@dataclass
class Recorded:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return first_header(self.headers, name)

    def names(self) -> set[bytes]:
        return {n for n, _ in self.headers}


@dataclass
class FakeUpstream:
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    connections: int = 0
    cancelled: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(ln, self.ssl_context) for ln in tcp]
        task_status.started(self.port)
        with self.scope:
            await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        """Close the listener and every connection: the port then refuses connections."""
        self.scope.cancel()

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req = await _next(conn, stream)
                if not isinstance(req, h11.Request):
                    return
                body = b""
                while True:
                    ev = await _next(conn, stream)
                    if isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    else:
                        return
                rec = Recorded(req.method, req.target, list(req.headers.raw_items()), body)
                self.requests.append(rec)
                if not await self._answer(conn, stream, rec):
                    return
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, conn: h11.Connection, stream: trio.abc.Stream, rec: Recorded) -> bool:
        path = rec.target.split(b"?")[0]

        async def send(*events: h11.Event) -> None:
            if rec.method == b"HEAD":  # the GET answer's head, no body (RFC 9110 §9.3.2)
                events = tuple(e for e in events if not isinstance(e, h11.Data))
            data = b"".join(conn.send(e) or b"" for e in events)
            await stream.send_all(data)

        if path.endswith(b"/close-before-head"):
            return False
        if path.endswith(b"/slow-head"):
            await trio.sleep_forever()
        if path.endswith(b"/sse"):
            await send(
                h11.Response(status_code=200, headers=[(b"content-type", b"text/event-stream")])
            )
            for i in range(5):
                await send(h11.Data(data=b'data: {"n": %d}\n\n' % i))
                await trio.sleep(0.05)
            await send(h11.Data(data=b"data: [DONE]\n\n"), h11.EndOfMessage())
            return True
        if path.endswith(b"/hang-mid-body"):
            await send(
                h11.Response(status_code=200, headers=[(b"content-type", b"text/event-stream")]),
                h11.Data(data=b"data: first\n\n"),
            )
            # returns when the proxy closes its upstream connection
            while await stream.receive_some(65536):
                pass
            self.cancelled.set()
            return False
        if path.endswith(b"/die-mid-body"):
            await send(
                h11.Response(status_code=200, headers=[(b"content-length", b"100")]),
                h11.Data(data=b"x" * 10),
            )
            return False
        if path.endswith(b"/answer-then-close"):
            # keep-alive as far as the headers say, then the socket closes: a stale pool entry
            await send(
                h11.Response(status_code=200, headers=[(b"content-length", b"2")]),
                h11.Data(data=b"ok"),
                h11.EndOfMessage(),
            )
            return False
        if path.endswith(b"/status-418"):
            body = b'{"error":{"message":"teapot","type":"upstream"}}'
            await send(
                h11.Response(
                    status_code=418,
                    headers=[
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )
            return True
        body = json.dumps(
            {
                "method": rec.method.decode(),
                "target": rec.target.decode(),
                "body": rec.body.decode("utf-8", "replace"),
            }
        ).encode()
        await send(
            h11.Response(
                status_code=200,
                headers=[
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-upstream", b"fake"),
                    (b"connection", b"keep-alive, x-drop-me"),
                    (b"x-drop-me", b"1"),
                ],
            ),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        return True


async def _next(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event:
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
            continue
        assert isinstance(ev, h11.Event), ev  # PAUSED: a caller skipped start_next_cycle()
        return ev


def new_key(prefix: str = "lr_live_") -> str:
    return prefix + secrets.token_hex(24)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Keys:
    api: str = field(default_factory=new_key)
    narrow: str = field(default_factory=new_key)  # openai/gpt-4o-mini only
    mgmt: str = field(default_factory=lambda: new_key("lr_mgmt_"))
    disabled: str = field(default_factory=new_key)
    expired: str = field(default_factory=new_key)

    def table(self) -> str:
        return f"""
[tenants.acme]
allowed_providers = ["openai", "anthropic", "google"]

[[keys]]
id = "main"
tenant = "acme"
sha256 = "{sha(self.api)}"

[[keys]]
id = "narrow"
tenant = "acme"
sha256 = "{sha(self.narrow)}"
allowed_providers = ["openai"]
allowed_models = ["openai/gpt-4o-mini"]

[[keys]]
id = "admin"
tenant = "acme"
type = "management"
sha256 = "{sha(self.mgmt)}"

[[keys]]
id = "off"
tenant = "acme"
sha256 = "{sha(self.disabled)}"
disabled = true

[[keys]]
id = "old"
tenant = "acme"
sha256 = "{sha(self.expired)}"
expires_at = 2001-01-01T00:00:00Z
"""


def make_config(
    tmp: Path, upstream_port: int, keys: Keys, *, ca_file: Path | None = None, **server: Any
) -> Config:
    (tmp / "keys.toml").write_text(keys.table())
    scheme = "https" if ca_file else "http"
    up = UpstreamConfig(
        name="fake",
        url=f"{scheme}://127.0.0.1:{upstream_port}",
        scheme=scheme,
        ca_file=ca_file,
        host="127.0.0.1",
        port=upstream_port,
        base_path="",
        auth_header="Authorization",
        auth_value="Bearer upstream-secret",
        connect_timeout_s=2,
        read_timeout_s=2,
    )
    routes = (
        RouteConfig(pattern="/v1*/models/*:*", upstream="fake", provider="google"),
        RouteConfig(pattern="/v1/messages*", upstream="fake", provider="anthropic"),
        RouteConfig(prefix="/v1/", upstream="fake", provider="openai"),
        RouteConfig(
            prefix="/openai/",
            upstream="fake",
            provider="openai",
            strip_prefix="/openai",
            rewrite_model=True,
        ),
    )
    base = ServerConfig(listen=(("127.0.0.1", 0),), admin_listen=None)
    return Config(
        path=tmp / "aroutd.toml",
        server=replace(base, **server),
        keys=KeysConfig(file=tmp / "keys.toml"),
        state=StateConfig(path=tmp / "state" / "aroutd.db"),
        wallet=WalletConfig(jwt_secret_file=tmp / "state" / "jwt.secret"),
        x402=X402Config(),
        upstreams={"fake": up},
        routes=routes,
        pricing={},
    )


@dataclass
class Harness:
    port: int
    keys: Keys
    upstream: FakeUpstream
    config: Config
    admin_port: int = 0


@asynccontextmanager
async def daemon(
    tmp: Path,
    *,
    upstream_tls: bool = False,
    trust_upstream: bool = True,
    upstream_port: int | None = None,
    keys: Keys | None = None,
    **server: Any,
) -> AsyncIterator[Harness]:
    """A fake upstream and the real daemon, both in this trio run, on loopback.

    ``upstream_tls``: the fake upstream speaks TLS with a trustme certificate and
    the daemon trusts its CA through ``ca_file`` (another CA with ``trust_upstream=False``).
    ``upstream_port``: send the daemon's upstream traffic there instead of to the
    fake (which still runs, and should then see nothing). ``keys``: another key table.
    """
    async with trio.open_nursery() as nursery:
        fake = FakeUpstream()
        ca_file = None
        if upstream_tls:
            ca = trustme.CA()
            fake.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(fake.ssl_context)
            ca_file = tmp / "upstream-ca.pem"
            trusted = ca if trust_upstream else trustme.CA()
            trusted.cert_pem.write_to_path(str(ca_file))
        await nursery.start(fake.serve)
        keys = keys if keys is not None else Keys()
        port = fake.port if upstream_port is None else upstream_port
        cfg = make_config(tmp, port, keys, ca_file=ca_file, **server)
        bound: Bound = await nursery.start(serve, cfg)
        admin_port = bound.admin[0][1] if bound.admin else 0
        yield Harness(bound.addresses[0][1], keys, fake, cfg, admin_port)
        nursery.cancel_scope.cancel()


@dataclass
class Reply:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return first_header(self.headers, name)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive h11 client on one connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[Client]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            yield cls(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> Reply:
        hdrs = [("host", "test"), *headers]
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        resp = await _next(self.conn, self.stream)
        while isinstance(resp, h11.InformationalResponse):
            resp = await _next(self.conn, self.stream)
        assert isinstance(resp, h11.Response), resp
        out = b""
        while True:
            ev = await _next(self.conn, self.stream)
            if isinstance(ev, h11.Data):
                out += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {ev!r}")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Reply(resp.status_code, list(resp.headers.raw_items()), out)


async def request(
    port: int, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> Reply:
    async with Client.open(port) as c:
        return await c.request(method, target, headers, body)


class ReadTimedOut(AssertionError):
    """``raw_exchange``: the server neither closed the connection nor stopped talking in time."""

    def __init__(self, timeout: float, received: bytes) -> None:
        super().__init__(
            f"the server did not close the connection within {timeout} s; "
            f"received {len(received)} bytes: {received[:300]!r}"
        )
        self.received = received


async def raw_exchange(
    port: int, data: bytes, *, read_timeout: float = 3.0, allow_timeout: bool = False
) -> bytes:
    """Send raw bytes; read until the server closes the connection, and return what came.

    The server must close (EOF, or a reset after its answer) within ``read_timeout``:
    otherwise this raises ``ReadTimedOut``, so a test that expects an answer and a
    close cannot pass on a hang. A caller that expects the connection to stay
    open passes ``allow_timeout=True`` and gets what arrived until the timeout.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = b""
    try:
        with suppress(trio.BrokenResourceError):  # closed before all was sent
            await stream.send_all(data)
        with trio.move_on_after(read_timeout) as scope:
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # reset by the server: closed too
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        await trio.aclose_forcefully(stream)
    if scope.cancelled_caught and not allow_timeout:
        raise ReadTimedOut(read_timeout, out)
    return out


def parse_replies(data: bytes) -> list[Reply]:
    """Every response in ``data``, a whole connection's output up to the server's close.

    Read by a real h11 client (interim 1xx responses skipped). ``data`` must end
    exactly at the end of the last response: a truncated one, bytes after one
    that said ``Connection: close``, or anything h11 rejects is an AssertionError.
    """
    replies: list[Reply] = []
    try:
        _parse_replies(data, replies)
    except h11.ProtocolError as exc:
        raise AssertionError(f"after {len(replies)} replies, not HTTP: {exc!r}") from exc
    return replies


def _parse_replies(data: bytes, replies: list[Reply]) -> None:
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    conn.receive_data(b"")  # the server closed after these bytes
    while conn.trailing_data[0]:  # a next response has begun
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "t")]))
        conn.send(h11.EndOfMessage())
        ev = conn.next_event()
        while isinstance(ev, h11.InformationalResponse):
            ev = conn.next_event()
        assert isinstance(ev, h11.Response), f"after {len(replies)} replies: {ev!r}"
        head = ev
        body = b""
        while True:
            ev = conn.next_event()
            if isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"reply {len(replies) + 1} cut short: {ev!r}")
        replies.append(Reply(head.status_code, list(head.headers.raw_items()), body))
        if conn.their_state is not h11.DONE:  # it said Connection: close
            leftover = conn.trailing_data[0]
            assert not leftover, f"bytes after a closing reply: {bytes(leftover)[:300]!r}"
            return
        conn.start_next_cycle()


def only_reply(data: bytes) -> Reply:
    """The single response in ``data`` (see ``parse_replies``)."""
    replies = parse_replies(data)
    assert len(replies) == 1, [(r.status, r.body[:200]) for r in replies]
    return replies[0]


def err(message: str, type_: str) -> dict[str, dict[str, str]]:
    """The SPEC §13 envelope of an error aroutd answers itself, as parsed JSON."""
    return {"error": {"message": message, "type": type_}}


def unused_port() -> int:
    """A loopback port that was just free and now has nothing listening: connects are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def bearer(key: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {key}")


REFERENCE_CREDENTIALS = {
    "openai_api_key": "sk-test-openai",
    "anthropic_api_key": "sk-ant",
    "gemini_api_key": "g",
}


def reference_credentials(folder: Path) -> dict[str, str]:
    """The files config/aroutd.toml reads from $CREDENTIALS_DIRECTORY, and that variable."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in REFERENCE_CREDENTIALS.items():
        (folder / name).write_text(value + "\n")
    return {"CREDENTIALS_DIRECTORY": str(folder)}
