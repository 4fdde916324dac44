"""WebSocket upgrades (SPEC §6): authenticated at the handshake, then relayed byte for byte.

The handshake is forwarded like any request (the client's credential out,
including an ``openai-insecure-api-key.*`` subprotocol entry; the upstream's
in) on a fresh upstream connection of its own. A 101 from the upstream is
passed back and both sockets are then joined until either side closes; any
other answer is relayed as a normal response. Frames are never parsed: what
the client and the upstream say to each other after the handshake is theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import h11
import trio

from aroutd.errors import BadGateway, GatewayTimeout
from aroutd.forwarding import response_headers
from aroutd.shell.connection import ClientConnection
from aroutd.shell.upstream import UpstreamConnection, UpstreamPool

__all__ = ["is_upgrade", "relay_upgrade"]

RELAY_SIZE = 65536


def is_upgrade(method: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1): GET with Upgrade: websocket."""
    if method != b"GET":
        return False
    return any(n == b"upgrade" and v.strip().lower() == b"websocket" for n, v in headers)


async def relay_upgrade(
    client: ClientConnection,
    pool: UpstreamPool,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    request_id: str,
) -> int:
    """Forward the handshake; on 101 join the two streams. Returns the status answered."""
    await client.read_body(0, stall_timeout_s=pool.config.read_timeout_s)  # a GET: no body
    up = await pool.connect()
    try:
        try:
            data = up.h11.send(h11.Request(method=b"GET", target=target, headers=headers))
            await up.stream.send_all(data or b"")
            with trio.fail_after(pool.config.read_timeout_s):
                head = await _head(up)
        except trio.TooSlowError:
            raise GatewayTimeout("upstream timeout") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            raise BadGateway("upstream request failed") from None
        out = response_headers(
            list(head.headers.raw_items()), request_id=request_id, websocket=True
        )
        if head.status_code != 101:
            await _relay_refusal(client, up, head.status_code, out, pool.config.read_timeout_s)
            return head.status_code
        from_client = await client.switch_protocols(out)
        from_upstream = up.h11.trailing_data[0]
        await _join(client.stream, up.stream, from_client, from_upstream)
        return 101
    finally:
        await up.aclose()


async def _head(up: UpstreamConnection) -> h11.InformationalResponse | h11.Response:
    while True:
        event = up.h11.next_event()
        if event is h11.NEED_DATA:
            up.h11.receive_data(bytes(await up.stream.receive_some(RELAY_SIZE)))
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
            continue  # 1xx other than 101: keep waiting
        if isinstance(event, h11.InformationalResponse | h11.Response):
            return event
        raise BadGateway("upstream request failed")


async def _relay_refusal(
    client: ClientConnection,
    up: UpstreamConnection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    read_timeout_s: float,
) -> None:
    """The upstream said no (401, 426...): pass its answer on and end the connection."""
    body = b""
    with trio.move_on_after(read_timeout_s):
        while True:
            event = up.h11.next_event()
            if event is h11.NEED_DATA:
                up.h11.receive_data(bytes(await up.stream.receive_some(RELAY_SIZE)))
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            else:
                break
    dropped = (b"content-length", b"connection", b"upgrade")
    keep = [(n, v) for n, v in headers if n.lower() not in dropped]
    await client.send_response(status, [*keep, (b"connection", b"close")], body)


async def _join(
    client: trio.abc.Stream, upstream: trio.abc.Stream, from_client: bytes, from_upstream: bytes
) -> None:
    """Copy bytes both ways until one side closes or fails; then both are closed."""

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes) -> None:
        try:
            if first:
                await dst.send_all(first)
            while data := await src.receive_some(RELAY_SIZE):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, client, upstream, from_client)
        nursery.start_soon(pump, upstream, client, from_upstream)
