"""Pooled HTTP/1.1 client connections to the configured upstreams (SPEC §6).

One :class:`UpstreamPool` per ``[upstreams.NAME]``: idle keep-alive connections
are kept up to ``pool_size``; https uses the system trust store plus
``ca_file``. The request body is always in hand (the handler buffers it to find
the model), so a pooled connection that fails before any response byte is
retried once on a fresh connection, as SPEC §6 allows.

A connection goes back to the pool only when it is provably clean: its answer
was read to the end, both sides agree to keep it, and not one byte more is
buffered or waiting in the socket (an upstream that sends more than its
Content-Length, a body after a 204, anything after the last chunk, would
otherwise hand its stray bytes to the next request, another tenant's). A pooled
connection that became readable while idle (stray bytes, or the upstream
closing it) is closed instead of used.

A WebSocket handshake (``upgrade=True``) takes a fresh connection of its own
and the same head reading and error mapping; on a 101 the caller takes the
stream over with :meth:`UpstreamResponse.switch`.

Foreign exceptions (OSError, trio's, h11's) are mapped here, at this one
boundary, to :class:`UpstreamFailed` (502) and :class:`UpstreamTimeout` (504);
mid-body failures surface as :class:`UpstreamBroken` so the caller can cut the
client's response instead of finishing it.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11
import trio

from aroutd.config.parse import UpstreamConfig
from aroutd.errors import BadGateway, GatewayTimeout
from aroutd.headers import HeaderList

__all__ = [
    "ABANDON_POLL_S",
    "Abandon",
    "Abandoned",
    "UpstreamBroken",
    "UpstreamPool",
    "UpstreamResponse",
]

RECEIVE_SIZE = 65536


class UpstreamBroken(Exception):
    """The upstream failed after the response head was relayed."""


class Abandoned(Exception):
    """The client went away while its upstream request was waiting."""


Abandon = Callable[[], bool]  # "has the client gone?", cheap and non-blocking
ABANDON_POLL_S = 0.1  # waiting for the answer's head: a client that leaves is noticed this fast
# relaying a body, every chunk written also tells that the client left; between chunks
# (a stream that pauses) a slower poll keeps wakeups low for many concurrent streams
ABANDON_POLL_BODY_S = 1.0


def UpstreamFailed() -> BadGateway:
    return BadGateway("upstream request failed")


def UpstreamTimeout() -> GatewayTimeout:
    return GatewayTimeout("upstream timeout")


class _Conn:
    __slots__ = ("_poller", "h11", "received", "sock", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.received = False  # a byte of the current request's answer has arrived
        self._poller: select.poll | None = None  # made once, at the first clean() check
        # plain TCP: the raw socket, to wait for readability before a recv()
        self.sock = stream.socket if isinstance(stream, trio.SocketStream) else None

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await trio.aclose_forcefully(self.stream)

    def drained(self) -> bool:
        """Nothing buffered past the answer: h11 holds no byte of a next one, nor an EOF."""
        return self.h11.trailing_data == (b"", False)

    def clean(self) -> bool:
        """Drained, and nothing waiting in the socket either (stray bytes that came late,
        or the upstream closing): only then may the next request use this connection."""
        if not self.drained():
            return False
        if self._poller is None:
            raw = self._raw_socket()
            if raw is None:
                return True
            self._poller = select.poll()
            self._poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
        return not self._poller.poll(0)

    def _raw_socket(self) -> trio.socket.SocketType | None:
        if self.sock is not None:
            return self.sock
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            transport = stream.transport_stream
            if isinstance(transport, trio.SocketStream):
                return transport.socket
        return None


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: HeaderList
    reason: bytes
    _conn: _Conn
    _pool: UpstreamPool
    _abandoned: Abandon | None = None
    _done: bool = False

    def _buffered(self) -> tuple[list[bytes], bool]:
        """The body chunks h11 already holds, without I/O: (chunks, ended)."""
        chunks: list[bytes] = []
        conn = self._conn.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                raise UpstreamBroken() from None
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                return chunks, True
            elif event is h11.NEED_DATA:
                return chunks, False
            else:
                raise UpstreamBroken()

    def switch(self) -> tuple[trio.abc.Stream, bytes]:
        """After a 101: the raw stream and the bytes the upstream sent past its head."""
        assert self.status == 101
        return self._conn.stream, bytes(self._conn.h11.trailing_data[0])

    async def iter_batches(self) -> AsyncIterator[tuple[list[bytes], bool]]:
        """The body as it arrives, in batches of what one read brought: (chunks, ended).

        The first batch comes without waiting (it may be empty), so the caller
        can send the head at once, together with any body that came with it:
        a small answer then leaves in one write. UpstreamBroken if the
        upstream dies, breaks the protocol or is silent for read_timeout_s.
        """
        chunks, ended = self._buffered()
        yield chunks, ended
        read_timeout = self._pool.config.read_timeout_s
        while not ended:
            try:
                data = await _receive(
                    self._conn, read_timeout, self._abandoned, ABANDON_POLL_BODY_S
                )
                self._conn.h11.receive_data(data)
            except (trio.TooSlowError, _Failure, RuntimeError):
                raise UpstreamBroken() from None
            chunks, ended = self._buffered()
            if not ended and not chunks and not data:
                raise UpstreamBroken()  # EOF before the end of the body
            yield chunks, ended


class _Failure(Exception):
    """Transport or protocol failure on an upstream connection (internal)."""


async def _receive(
    conn: _Conn, read_timeout_s: float, abandoned: Abandon | None, poll_s: float = ABANDON_POLL_S
) -> bytes:
    """One read from the upstream.

    trio.TooSlowError after ``read_timeout_s`` of silence; while waiting,
    ``abandoned()`` is asked every ``poll_s`` and Abandoned raised when it
    says the client is gone. Polling from this one task costs nothing for the
    many answers that come quickly, where a watcher task per request cost a
    quarter of the proxy's throughput.
    """
    deadline = trio.current_time() + read_timeout_s
    while True:
        wake = deadline if abandoned is None else min(deadline, trio.current_time() + poll_s)
        with trio.move_on_at(wake):
            try:
                if conn.sock is not None:
                    # nothing can be here yet: skip the recv() that would say EAGAIN
                    await trio.lowlevel.wait_readable(conn.sock)
                data = bytes(await conn.stream.receive_some(RECEIVE_SIZE))
                conn.received = conn.received or bool(data)
                return data
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Failure() from None
        if trio.current_time() >= deadline:
            raise trio.TooSlowError
        if abandoned is not None and abandoned():
            raise Abandoned()


async def _next_event(conn: _Conn, read_timeout_s: float, abandoned: Abandon | None) -> h11.Event:
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError:
            raise _Failure() from None
        if event is h11.NEED_DATA:
            data = await _receive(conn, read_timeout_s, abandoned)
            try:
                conn.h11.receive_data(data)
            except RuntimeError:
                raise _Failure() from None
            continue
        if isinstance(event, h11.ConnectionClosed):
            raise _Failure()
        return event  # type: ignore[return-value]


class UpstreamPool:
    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._idle: list[_Conn] = []
        self._ssl: ssl.SSLContext | None = None
        if config.scheme == "https":
            ctx = ssl.create_default_context()
            if config.ca_file is not None:
                ctx.load_verify_locations(cafile=str(config.ca_file))
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        default_port = 443 if config.scheme == "https" else 80
        self.host_header = (
            config.host
            if config.port == default_port
            else f"{_host_literal(config.host)}:{config.port}"
        ).encode()

    async def _connect(self) -> _Conn:
        cfg = self.config
        try:
            with trio.fail_after(cfg.connect_timeout_s):
                stream: trio.abc.Stream = await trio.open_tcp_stream(cfg.host, cfg.port)
                if self._ssl is not None:
                    tls = trio.SSLStream(stream, self._ssl, server_hostname=cfg.host)
                    await tls.do_handshake()
                    stream = tls
        except trio.TooSlowError:
            raise UpstreamFailed() from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError):
            raise UpstreamFailed() from None
        return _Conn(stream)

    async def _send_request(
        self,
        conn: _Conn,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes,
        abandoned: Abandon | None,
        upgrade: bool,
    ) -> h11.Response | h11.InformationalResponse:
        conn.received = False
        try:
            data = conn.h11.send(h11.Request(method=method, target=target, headers=headers))
            data = (data or b"") + (conn.h11.send(h11.Data(data=body)) or b"") if body else data
            data = (data or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
            await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise _Failure() from None
        while True:
            event = await _next_event(conn, self.config.read_timeout_s, abandoned)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise _Failure()
            if event.status_code == 101:
                if upgrade:
                    return event
                raise _Failure()  # switching protocols nobody asked for
            # other 1xx (100, 103): informational only, the answer is still to come

    @asynccontextmanager
    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        *,
        abandoned: Abandon | None = None,
        upgrade: bool = False,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send one request; yield the response with its body to iterate.

        ``abandoned``: asked while waiting for the upstream; when it returns
        True (the client left) the request is given up with Abandoned.
        ``upgrade``: a WebSocket handshake, on a fresh connection; a 101 is
        yielded as the response (see :meth:`UpstreamResponse.switch`).

        The connection goes back to the pool only when it is clean (see the
        module docstring); otherwise it is closed.
        """
        hdrs = list(headers)
        conn: _Conn | None = None
        head: h11.Response | h11.InformationalResponse | None = None
        for attempt in (0, 1):
            pooled = attempt == 0 and not upgrade and await self._take_idle()
            conn = self._idle.pop() if pooled else await self._connect()
            try:
                head = await self._send_request(
                    conn, method, target, hdrs, body, abandoned, upgrade
                )
                break
            except trio.TooSlowError:
                await conn.aclose()
                raise UpstreamTimeout() from None
            except _Failure:
                await conn.aclose()
                # retried only when not one byte of an answer came (SPEC §6): a broken
                # answer is the upstream's, and the request may have been acted on
                if not pooled or conn.received:
                    raise UpstreamFailed() from None
            except BaseException:
                await conn.aclose()
                raise
        assert conn is not None and head is not None
        resp = UpstreamResponse(
            status=head.status_code,
            headers=list(head.headers.raw_items()),
            reason=bytes(head.reason),
            _conn=conn,
            _pool=self,
            _abandoned=abandoned,
        )
        try:
            yield resp
        finally:
            if not self._keep(resp):
                await conn.aclose()

    async def _take_idle(self) -> bool:
        """True when an idle connection is ready on top of the pool; the unclean ones met
        on the way (readable while idle: stray bytes or a close) are closed."""
        while self._idle:
            if self._idle[-1].clean():
                return True
            await self._idle.pop().aclose()
        return False

    def _keep(self, resp: UpstreamResponse) -> bool:
        """Back to the pool when the body was read to its end, both sides agree, and nothing
        is left over."""
        conn = resp._conn
        if (
            resp._done
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
            and len(self._idle) < self.config.pool_size
            and conn.drained()  # the socket itself is looked at when the connection is taken
        ):
            conn.h11.start_next_cycle()
            self._idle.append(conn)
            return True
        return False

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()


def _host_literal(host: str) -> str:
    return f"[{host}]" if ":" in host else host
