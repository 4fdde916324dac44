"""The per-connection loop: keep-alive, pipelining, the head timeouts, draining.

Requests on one connection are answered strictly in order (h11 holds a
pipelined request's bytes until the previous response is done). Timeouts are
cancel scopes owned here (SPEC §2):

- ``header_timeout_s``: from the first byte of a request (or from accept, for
  the first one) until its head is complete; a partial head gets 408, silence
  before any byte just closes;
- ``idle_timeout_s``: between requests on a kept-alive connection;
- the body stall timeout lives in connection.py, the upstream ones in upstream.py.

On drain (SIGTERM) an idle connection closes at once and a busy one closes
after its current response.

This loop is the connection's outer fault barrier (SPEC §6): a fault outside
any one request (the handler has its own) is logged, counted and ends this
connection only; it never reaches the daemon's nursery. ``Cancelled`` passes.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import h11
import trio

from aroutd.errors import BadRequest, HTTPError, RequestTimeout
from aroutd.proxyproto import MAX_V2_BYTES, ProxyHeader, parse_proxy_header
from aroutd.shell.connection import ClientConnection, ClientGone
from aroutd.shell.handler import ConnInfo, handle_request, log_fault
from aroutd.shell.runtime import Runtime

__all__ = ["Handler", "read_proxy_header", "serve_connection"]

PROXY_PEEK_BYTES = MAX_V2_BYTES
PROXY_RETRY_S = 0.01  # a header split over segments (rare): look again shortly


Handler = Callable[[Runtime, ClientConnection, h11.Request, ConnInfo], Awaitable[bool]]


async def serve_connection(
    rt: Runtime, stream: trio.abc.Stream, info: ConnInfo, handle: Handler = handle_request
) -> None:
    """Requests on one connection, each answered by ``handle`` (False: close after it)."""
    server = rt.config.server
    client = ClientConnection(stream, max_header_bytes=server.max_header_bytes)
    try:
        first = True
        while True:
            if not first and not await _wait_idle(rt, client, server.idle_timeout_s):
                return
            first = False
            with trio.move_on_after(server.header_timeout_s) as head_scope:
                try:
                    req = await client.next_request()
                except HTTPError as err:
                    await client.send_error(err)
                    return
            if head_scope.cancelled_caught:
                if client.has_buffered_data():
                    await client.send_error(RequestTimeout("request header timeout", close=True))
                return
            if req is None:
                return
            if not await handle(rt, client, req, info):
                return
            if rt.draining.is_set():
                return
            client.start_next_cycle()
    except ClientGone:
        return
    except Exception as exc:  # never Cancelled, a BaseException
        log_fault(rt, "connection", exc)
    finally:
        await client.aclose()


async def read_proxy_header(sock: trio.socket.SocketType) -> ProxyHeader:
    """Consume exactly the PROXY header from ``sock`` (BadRequest if there is none).

    Peeked first, then read to its length, so the bytes after it (HTTP or a TLS
    ClientHello) stay in the socket for whoever reads next. The caller bounds
    the wait (header_timeout_s).
    """
    while True:
        data = await sock.recv(PROXY_PEEK_BYTES, socket.MSG_PEEK)
        if not data:
            raise BadRequest("invalid PROXY protocol header", close=True)
        header = parse_proxy_header(data)
        if header is not None:
            got = b""
            while len(got) < header.length:
                chunk = await sock.recv(header.length - len(got))
                if not chunk:
                    raise BadRequest("invalid PROXY protocol header", close=True)
                got += chunk
            return header
        await trio.sleep(PROXY_RETRY_S)


async def _wait_idle(rt: Runtime, client: ClientConnection, idle_timeout_s: float) -> bool:
    """Between requests: True when the next request starts; False to close."""
    if client.has_buffered_data():
        return True  # pipelined: already here
    if rt.draining.is_set():
        return False
    readable = False
    with trio.move_on_after(idle_timeout_s) as scope:
        rt.idle_scopes.add(scope)  # drain() cancels these
        try:
            readable = await client.wait_readable()
        finally:
            rt.idle_scopes.discard(scope)
    return readable
