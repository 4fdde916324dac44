"""The admin listener (SPEC §2 admin_listen, §11): GET /healthz and GET /metrics.

Separate from the API listener so that it can stay on loopback (or a private
interface) while the API faces clients; it has no authentication and serves
nothing else. The connection loop (timeouts, limits, keep-alive) is server.py's.
"""

from __future__ import annotations

import h11
import trio

from aroutd.errors import HTTPError, MethodNotAllowed, NotFound
from aroutd.headers import JSON_CONTENT_TYPE, HeaderList
from aroutd.shell.connection import ClientConnection
from aroutd.shell.handler import ConnInfo
from aroutd.shell.runtime import Runtime

__all__ = ["handle_admin"]

_PROMETHEUS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]  # HEAD: no body


async def handle_admin(
    rt: Runtime, client: ClientConnection, req: h11.Request, info: ConnInfo
) -> bool:
    """One admin request (server.serve_connection's handler); False to close."""
    try:
        status, headers, body = _answer(rt, req.method, req.target.partition(b"?")[0])
        await client.send_response(status, headers, body)
    except HTTPError as err:
        await client.send_error(err)
    with trio.move_on_after(rt.config.server.body_timeout_s):
        await client.discard_body(65536)
    return client.can_reuse()


def _answer(rt: Runtime, method: bytes, path: bytes) -> tuple[int, HeaderList, bytes]:
    if path not in (b"/healthz", b"/metrics"):
        raise NotFound("not found")
    if method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "GET, HEAD")])
    if path == b"/healthz":
        # serving goes on while the store is away (known keys, usage held in memory):
        # the state is reported, the answer stays 200
        store = b"ok" if rt.store_ok else b"unavailable"
        return 200, [JSON_CONTENT_TYPE], b'{"status":"ok","store":"' + store + b'"}'
    text = rt.metrics.render(
        open_connections=rt.open_connections,
        keys_loaded=len(rt.keytable.by_digest),
        store_keys=len(rt.store_keys),
        usage_pending=rt.usage.pending_rows(),
    )
    return 200, _PROMETHEUS, text.encode()
