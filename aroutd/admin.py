"""The admin listener (SPEC §2 admin_listen, §11): GET /healthz and GET /metrics.

Separate from the API listener so that it can stay on loopback (or a private
interface) while the API faces clients; it has no authentication and serves
nothing else. Same h11 connection handling and limits as the API side.
"""

from __future__ import annotations

import trio

from .connection import ClientConnection, ClientGone
from .errors import HTTPError, MethodNotAllowed, NotFound, RequestTimeout
from .runtime import Runtime

__all__ = ["serve_admin_connection"]

_JSON = [(b"content-type", b"application/json")]
_PROMETHEUS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


async def serve_admin_connection(rt: Runtime, stream: trio.abc.Stream) -> None:
    server = rt.config.server
    client = ClientConnection(stream, max_header_bytes=server.max_header_bytes)
    try:
        while True:
            with trio.move_on_after(server.idle_timeout_s) as idle:
                try:
                    req = await client.next_request()
                except HTTPError as err:
                    await client.send_error(err)
                    return
            if idle.cancelled_caught:
                if client.has_buffered_data():
                    await client.send_error(RequestTimeout("request header timeout", close=True))
                return
            if req is None:
                return
            try:
                status, headers, body = _answer(rt, req.method, req.target.partition(b"?")[0])
                await client.send_response(status, headers, body)
            except HTTPError as err:
                await client.send_error(err)
            with trio.move_on_after(server.body_timeout_s):
                await client.discard_body(65536)
            if not client.can_reuse() or rt.draining.is_set():
                return
            client.start_next_cycle()
    except ClientGone:
        return
    finally:
        await client.aclose()


def _answer(
    rt: Runtime, method: bytes, path: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    if path not in (b"/healthz", b"/metrics"):
        raise NotFound("not found")
    if method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "GET, HEAD")])
    if path == b"/healthz":
        return 200, _JSON, b'{"status":"ok"}'
    text = rt.metrics.render(
        open_connections=rt.open_connections, keys_loaded=len(rt.keytable.by_digest)
    )
    return 200, _PROMETHEUS, text.encode()
