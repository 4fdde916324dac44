"""One client HTTP/1.1 connection: an h11 server state machine bound to a trio stream.

This is the only place that turns client bytes into h11 events and back. It
knows the limits of SPEC §2 ``[server]`` that are about bytes and framing; the
timeouts are cancel scopes owned by the caller (server.py), as trio wants.

Rules kept here:
- the head may not exceed ``max_header_bytes``, counted both by h11 while it is
  incomplete and again on the complete head, since h11 accepts an oversized head
  that arrives whole in one read (SPEC §12);
- the body may not exceed ``max_body_bytes`` (Content-Length checked before
  reading, chunked bodies counted as they arrive);
- ``Expect: 100-continue`` is answered only when the body is actually wanted;
- the answer to a ``HEAD`` request is the ``GET`` answer's head without its
  body (RFC 9110 §9.3.2): the response helpers drop the body themselves, so no
  caller can break h11's framing with one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import h11
import trio

from aroutd.errors import BadRequest, HeaderTooLarge, HTTPError, PayloadTooLarge, RequestTimeout
from aroutd.framing import check_header_bytes, check_request_framing
from aroutd.headers import CONNECTION_CLOSE, JSON_CONTENT_TYPE, HeaderList, Headers, reason_phrase

__all__ = ["ClientConnection", "ClientGone"]

RECEIVE_SIZE = 65536


class ClientGone(Exception):
    """The client closed or broke the connection; nothing more can be sent."""


class ClientConnection:
    def __init__(self, stream: trio.abc.Stream, *, max_header_bytes: int) -> None:
        self.stream = stream
        self.max_header_bytes = max_header_bytes
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._closed = False
        self._probe: socket.socket | None = None  # see peer_gone()
        self._content_length: int | None = None  # of the current request
        self._head_only = False  # the current request is a HEAD: answers carry no body
        self.stall_timeout_s: float | None = None  # while reading a body: 408 after this silence

    # -- receiving -------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            if self.stall_timeout_s is None:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                with trio.fail_after(self.stall_timeout_s):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
        except trio.TooSlowError:
            raise RequestTimeout("request body timeout", close=True) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.conn.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too

    def has_buffered_data(self) -> bool:
        """True when bytes of a next request are already here (h11's buffer)."""
        return bool(self.conn.trailing_data[0])

    async def wait_readable(self) -> bool:
        """Wait for the first byte of the next request; False on EOF."""
        if self.has_buffered_data():
            return True
        if self.conn.trailing_data[1]:
            return False
        if isinstance(self.stream, trio.SocketStream):
            # the next request is rarely here already: skip a recv() that says EAGAIN
            await trio.lowlevel.wait_readable(self.stream.socket)
        await self._receive()
        return not self.conn.trailing_data[1] or self.has_buffered_data()

    def peer_gone(self) -> bool:
        """Whether the client has closed its side, asked without blocking.

        A peek at the socket: EOF or an error means gone; pending bytes (a
        pipelined next request) stay where they are for h11 to read later.
        """
        if self._probe is None:
            sock = self._raw_socket()
            if sock is None:
                return False
            # a duplicate descriptor of our own, made once: the original stays trio's
            self._probe = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            return self._probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _raw_socket(self) -> trio.socket.SocketType | None:
        stream: object = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return stream.socket if isinstance(stream, trio.SocketStream) else None

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _protocol_error(exc) from None
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
                await self._receive()
                continue
            return event  # type: ignore[return-value]

    async def next_request(self) -> h11.Request | None:
        """The next request head, or None when the client closed cleanly between requests."""
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise BadRequest("malformed request", close=True)
        raw = list(event.headers.raw_items())
        head_size = len(event.target) + len(event.method) + sum(len(n) + len(v) + 4 for n, v in raw)
        check_header_bytes(head_size, self.max_header_bytes)
        check_request_framing(raw)
        self._head_only = event.method == b"HEAD"
        # framing.py has made sure there is at most one distinct, numeric value
        self._content_length = next(
            (int(v.split(b",")[0]) for n, v in raw if n.lower() == b"content-length"), None
        )
        return event

    async def read_body(self, max_body_bytes: int, *, stall_timeout_s: float) -> bytes:
        """The whole request body, at most ``max_body_bytes`` (413 beyond).

        A body that stalls for ``stall_timeout_s`` is a 408 (SPEC §2 body_timeout_s).
        """
        self.stall_timeout_s = stall_timeout_s
        try:
            return await self._read_body(max_body_bytes)
        finally:
            self.stall_timeout_s = None

    async def _read_body(self, max_body_bytes: int) -> bytes:
        length = self._content_length
        if length is not None and length > max_body_bytes:
            raise PayloadTooLarge("request body too large", close=True)
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_body_bytes:
                    raise PayloadTooLarge("request body too large", close=True)
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # ConnectionClosed mid-body
                raise ClientGone()

    def body_pending(self) -> bool:
        """True when the client may still be sending this request's body, or broke it off
        (malformed, or closed before its end): either way the connection cannot go on."""
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR)

    async def discard_body(self, limit: int) -> None:
        """Read and drop up to ``limit`` body bytes so the connection can be reused.

        Afterwards ``body_pending()`` tells whether that worked. A client waiting
        for ``100-continue`` is not asked for its body: the connection closes.
        """
        if self.conn.they_are_waiting_for_100_continue:
            return
        size = 0
        while self.conn.their_state is h11.SEND_BODY and size <= limit:
            try:
                event = await self._next_event()
            except HTTPError:  # a body we were only dropping broke off: so does the connection
                return
            if isinstance(event, h11.Data):
                size += len(event.data)
            elif not isinstance(event, h11.EndOfMessage):
                return

    # -- sending ---------------------------------------------------------------

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ClientGone() from None

    async def switch_protocols(self, headers: Headers) -> bytes:
        """Accept an Upgrade with 101; returns the bytes the client already sent past it.

        From here on the stream is no longer HTTP: the caller reads and writes it.
        """
        await self._send(
            h11.InformationalResponse(
                status_code=101, headers=list(headers), reason=b"Switching Protocols"
            )
        )
        return bytes(self.conn.trailing_data[0])

    async def send_events(self, events: Sequence[h11.Event]) -> None:
        """Several events (head, body chunks, end) in one write."""
        if self._head_only:  # an upstream that sends a body anyway: not to the client
            events = [e for e in events if not isinstance(e, h11.Data)]
        data = b"".join(self.conn.send(e) or b"" for e in events)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ClientGone() from None

    async def send_response(self, status: int, headers: Headers, body: bytes) -> None:
        """A complete response with a Content-Length body (for HEAD: the length, no body)."""
        hdrs = [*headers, (b"content-length", str(len(body)).encode())]
        data = self.conn.send(
            h11.Response(status_code=status, headers=hdrs, reason=reason_phrase(status))
        )
        if body and not self._head_only:
            data = (data or b"") + (self.conn.send(h11.Data(data=body)) or b"")
        data = (data or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ClientGone() from None

    def response_started(self) -> bool:
        """True once any byte of this request's answer has been sent."""
        return self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE)

    async def send_error(self, err: HTTPError, extra_headers: Headers = ()) -> None:
        """The JSON error envelope (SPEC §13), when a response can still be started."""
        if self.response_started():
            return
        headers: HeaderList = [JSON_CONTENT_TYPE]
        headers += [(k.encode(), v.encode()) for k, v in err.headers]
        headers += list(extra_headers)
        if err.close and CONNECTION_CLOSE not in headers:
            headers.append(CONNECTION_CLOSE)
        try:
            await self.send_response(err.status, headers, err.body())
        except h11.LocalProtocolError:
            # h11 refuses a response for a request it could not parse at all
            # (e.g. no request line yet): write the bytes by hand.
            await self._send_raw_error(err)

    async def _send_raw_error(self, err: HTTPError) -> None:
        body = err.body()
        reason = reason_phrase(err.status) or b"Error"
        raw = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (err.status, reason, len(body))
        ) + body
        try:
            await self.stream.send_all(raw)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ClientGone() from None

    # -- lifecycle -------------------------------------------------------------

    def can_reuse(self) -> bool:
        return (
            self.conn.our_state is h11.DONE
            and self.conn.their_state is h11.DONE
            and not self._closed
        )

    def start_next_cycle(self) -> None:
        self.conn.start_next_cycle()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.close()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()


def _protocol_error(exc: h11.RemoteProtocolError) -> HTTPError:
    """Map h11's complaint to our error; its text may quote client bytes, so drop it."""
    if exc.error_status_hint == 431:
        return HeaderTooLarge("request header too large", close=True)
    return BadRequest("malformed request", close=True)
