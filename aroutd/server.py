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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import trio

from .connection import ClientConnection, ClientGone
from .errors import HTTPError, RequestTimeout
from .handler import ConnInfo, handle_request
from .runtime import Runtime

__all__ = ["Handler", "serve_connection"]


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
    finally:
        await client.aclose()


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
