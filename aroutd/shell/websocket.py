"""WebSocket upgrades (SPEC §6) after the upstream's 101: bytes relayed both ways, unparsed.

The handshake itself is an ordinary request through the one upstream client
(:mod:`aroutd.shell.upstream`, ``upgrade=True``: a fresh connection, the same
head reading and error mapping), and an answer other than 101 is relayed like
any other (:mod:`aroutd.shell.relay`). Once both sides have switched, what the
client and the upstream say to each other is theirs: frames are never parsed,
and the two streams are joined until either side closes.
"""

from __future__ import annotations

import trio

__all__ = ["join"]

RELAY_SIZE = 65536


async def join(
    client: trio.abc.Stream, upstream: trio.abc.Stream, from_client: bytes, from_upstream: bytes
) -> None:
    """Copy bytes both ways until one side closes or fails; the caller closes both.

    ``from_client`` / ``from_upstream``: bytes each side sent past its handshake head.
    """

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
