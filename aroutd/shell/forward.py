"""An allowed request sent upstream (SPEC §6, §9): its head, its body, metered.

:func:`forward` builds the upstream request of an allowed plan (:func:`outbound`: the
pool, the target, the head of :func:`aroutd.forwarding.upstream_request_headers`),
asks an OpenAI stream for the usage it did not ask for (and strips it again), relays
the answer with our own ``extra`` headers (``PAYMENT-RESPONSE``, ``X-RateLimit-*``),
and charges what the upstream reported, also when the answer is cut short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import h11

from aroutd.accesslog import AccessRecord
from aroutd.admission import Forward
from aroutd.forwarding import upstream_request_headers
from aroutd.headers import HeaderList, Headers
from aroutd.principal import Principal
from aroutd.shell.connection import ClientConnection
from aroutd.shell.metering import Metering, account, response_shape
from aroutd.shell.relay import Outbound, relay
from aroutd.shell.runtime import Runtime
from aroutd.usage.include_usage import ask_for_usage

__all__ = ["ConnInfo", "forward", "outbound"]


@dataclass(frozen=True, slots=True)
class ConnInfo:
    peer_ip: str
    proto: str  # "http" | "https": what the client used to reach us


async def forward(
    rt: Runtime,
    client: ClientConnection,
    req: h11.Request,
    headers: HeaderList,
    plan: Forward,
    principal: Principal,
    info: ConnInfo,
    rec: AccessRecord,
    peer_trusted: bool,
    extra: list[tuple[str, str]],
) -> None:
    """Send an allowed plan upstream, metered, and relay the answer with ``extra``."""
    match = plan.match
    metering = None
    if not plan.upgrade:
        metering = Metering(response_shape(match.upstream_path))
        if metering.shape == "openai" and match.upstream_path.endswith("/chat/completions"):
            asked = ask_for_usage(plan.body)
            if asked is not None:  # a stream without usage: ask for it, strip it again
                plan, metering.strip = replace(plan, body=asked), True
    out = outbound(rt, req, headers, plan, principal, info, rec, peer_trusted, metering)
    try:
        closing = rt.draining.is_set()
        await relay(
            client,
            out,
            rec.request_id,
            rec,
            closing=closing,
            metering=metering,
            extra=[(n.encode(), v.encode()) for n, v in extra],
        )
    finally:
        if metering is not None:  # also when cut: what the upstream reported is charged
            account(rt, principal, rec, metering)


def outbound(
    rt: Runtime,
    req: h11.Request,
    headers: Headers,
    plan: Forward,
    principal: Principal,
    info: ConnInfo,
    rec: AccessRecord,
    peer_trusted: bool,
    metering: Metering | None = None,
) -> Outbound:
    """The upstream request of an allowed plan: its pool, target, head and body. A
    metered answer is asked for without content coding, so its usage can be read."""
    pool = rt.pools[plan.match.upstream]
    upgrade = plan.upgrade
    has_body = not upgrade and bool(plan.body or req.method not in (b"GET", b"HEAD"))
    up_headers = upstream_request_headers(
        headers,
        upstream=pool.config,
        principal=principal,
        client_addr=rec.client,
        peer_trusted=peer_trusted,
        peer_addr=info.peer_ip,
        proto=info.proto,
        request_id=rec.request_id,
        content_length=len(plan.body) if has_body else None,
        websocket=upgrade,
    )
    if metering is not None:
        up_headers = [(n, v) for n, v in up_headers if n.lower() != b"accept-encoding"]
        up_headers.append((b"accept-encoding", b"identity"))
    return Outbound(pool, req.method, plan.target, up_headers, plan.body, upgrade=upgrade)
