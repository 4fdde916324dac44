"""An allowed request sent upstream and its answer relayed as it arrives (SPEC §6).

- Each batch of upstream bytes is written to the client at once (SSE events
  are never held back); the head leaves together with whatever body came with it.
- Before the client has been sent anything, a failure is our JSON error
  (502 ``upstream request failed``, 504 ``upstream timeout``). After that, the
  client's response is cut off (no final chunk, :class:`Cut`) so it sees an
  error, never a truncated success.
- A client that leaves gives up its upstream request at once.
- A WebSocket handshake answered 101 switches both sides and joins the
  streams (:mod:`aroutd.shell.websocket`); any other answer to it is relayed
  like this.

``rec.ttfb_ms`` is the upstream's time to its answer's head, stamped when the
head arrives; whether the client has been sent anything is a flag of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import h11

from aroutd.accesslog import AccessRecord
from aroutd.errors import BadGateway
from aroutd.forwarding import response_headers
from aroutd.headers import CONNECTION_CLOSE, HeaderList, Headers, reason_phrase
from aroutd.shell.connection import ClientConnection, ClientGone
from aroutd.shell.metering import Metering
from aroutd.shell.upstream import Abandoned, UpstreamBroken, UpstreamPool, UpstreamResponse
from aroutd.shell.websocket import join

__all__ = ["Cut", "Outbound", "relay"]


class Cut(Exception):
    """The response was started and cannot be finished: close the connection."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """The request as it goes upstream."""

    pool: UpstreamPool
    method: bytes
    target: bytes
    headers: HeaderList
    body: bytes = field(repr=False)
    upgrade: bool = False


async def relay(
    client: ClientConnection,
    out: Outbound,
    rid: str,
    rec: AccessRecord,
    *,
    closing: bool,
    metering: Metering | None = None,
    extra: Headers = (),
) -> None:
    """Send ``out`` and relay its answer; ``closing``: the answer says Connection: close;
    ``metering``: reads the usage of the answer's body as it passes; ``extra``: headers
    of our own for the answer (``PAYMENT-RESPONSE``, ``X-RateLimit-*``)."""
    t0 = time.perf_counter()
    try:
        async with out.pool.request(
            out.method,
            out.target,
            out.headers,
            out.body,
            abandoned=client.peer_gone,
            upgrade=out.upgrade,
        ) as resp:
            rec.ttfb_ms = round((time.perf_counter() - t0) * 1000, 3)
            rec.status = resp.status
            if resp.status == 101:
                await _switch(client, resp, rid, extra)
            else:
                await _relay_body(
                    client, resp, rid, rec, closing=closing, metering=metering, extra=extra
                )
    except (ClientGone, Abandoned):
        # the client left: the upstream request is given up (closed) at once
        rec.error = "client gone"
        raise Cut() from None


async def _relay_body(
    client: ClientConnection,
    resp: UpstreamResponse,
    rid: str,
    rec: AccessRecord,
    *,
    closing: bool,
    metering: Metering | None,
    extra: Headers,
) -> None:
    if metering is not None:
        metering.start(resp.headers)
    head = response_headers(resp.headers, request_id=rid)
    head += extra
    if closing:
        head.append(CONNECTION_CLOSE)
    # the upstream's own reason phrase, or the standard one (RFC 9112 §4: it is optional)
    reason = resp.reason or reason_phrase(resp.status)
    events: list[h11.Event] = [h11.Response(status_code=resp.status, headers=head, reason=reason)]
    sent = False
    try:
        async for chunks, ended in resp.iter_batches():
            if metering is not None:
                chunks = metering.feed_batch(chunks)
                if ended:
                    chunks.append(metering.flush())
            events += [h11.Data(data=c) for c in chunks if c]
            if ended:
                events.append(h11.EndOfMessage())
            if events:
                await client.send_events(events)
                sent = True
            rec.bytes_out += sum(len(c) for c in chunks)
            events = []
    except UpstreamBroken:
        rec.error = "upstream broke mid-response"
        if not sent:  # nothing sent yet: the answer can still be ours
            raise BadGateway("upstream request failed") from None
        raise Cut() from None


async def _switch(
    client: ClientConnection, resp: UpstreamResponse, rid: str, extra: Headers
) -> None:
    """The upstream accepted the WebSocket handshake: so do we (with ``extra``), then join
    the streams."""
    head = response_headers(resp.headers, request_id=rid, websocket=True)
    head += extra
    from_client = await client.switch_protocols(head)
    stream, from_upstream = resp.switch()
    await join(client.stream, stream, from_client, from_upstream)
    raise Cut()  # the connection is no longer HTTP: it ends with the join
