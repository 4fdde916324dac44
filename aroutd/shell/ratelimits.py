"""Rate limits on the request path (SPEC §9): checked, answered, and fed tokens.

:func:`admit` runs after scope, spending limits and a wallet's balance, just before the
request is forwarded: the principal's limits (its key and tenant, or its wallet) are
checked at once in the runtime's limiter; a refused request is 429 ``rate limit
exceeded`` with ``Retry-After`` and counts nothing. Every answer to a principal with an
rpm or rpd limit carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix
seconds) of the window nearest to refusing it: an answer given before the check (a 403,
a 402) or by an endpoint that is not limited (``/v1/key``, the management API, the
balance) shows the window as it stands (:func:`standing`), counting nothing. A finished
response's input and output tokens go to the tpm windows (:func:`record_tokens`) when
its usage is known.

The in-memory limiter (sqlite deployments) counts per instance and never blocks, so it
runs on the event loop. The Redis one (``[state] backend = "redis"``) counts for every
instance at once, one atomic script per check: the check runs in a worker thread, and
reported tokens are queued and sent in the background (:func:`flush_tokens`) so that
no response waits for Redis at its end. While Redis does not answer, each instance
checks with its own in-memory limiter instead (inference goes on; limits then hold per
instance, as on sqlite).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from aroutd.accesslog import AccessRecord
from aroutd.errors import ServiceUnavailable, TooManyRequests
from aroutd.principal import Principal
from aroutd.ratelimit import LimiterBackend, Refused, header_values
from aroutd.shell.runtime import Runtime

__all__ = [
    "MSG_RATE_LIMITED",
    "RATE_LIMIT_HEADER",
    "admit",
    "flush_tokens",
    "record_tokens",
    "standing",
]

MSG_RATE_LIMITED = "rate limit exceeded"
RATE_LIMIT_HEADER = "X-RateLimit-Limit"  # the first of the three
FLUSH_S = 0.05
MAX_PENDING_TOKENS = 100_000  # reports held while Redis is away; past it, dropped

Header = tuple[str, str]
T = TypeVar("T")


async def admit(rt: Runtime, principal: Principal, rec: AccessRecord) -> list[Header]:
    """The ``X-RateLimit-*`` headers of an admitted request; else the 429."""
    if not principal.rate_limits:
        return []
    checks, now = principal.rate_limits, rt.wall_clock()
    decision = await _on_limiter(rt, lambda limiter: limiter.check(checks, now))
    values = header_values(decision)
    headers = [] if values is None else _window(values)
    if isinstance(decision, Refused):
        rt.metrics.rate_limited[(decision.reason, principal.kind)] += 1
        rec.rate_limit = decision.reason
        retry = [("Retry-After", str(decision.retry_after_s))]
        raise TooManyRequests(MSG_RATE_LIMITED, headers=retry + headers)
    return headers


async def standing(rt: Runtime, principal: Principal) -> list[Header]:
    """The ``X-RateLimit-*`` headers of an answer that counts nothing (one given before the
    check, or by an endpoint that is not limited): the window as it stands."""
    if not principal.rate_limits:
        return []
    checks, now = principal.rate_limits, rt.wall_clock()
    window = await _on_limiter(rt, lambda limiter: limiter.peek(checks, now))
    return [] if window is None else _window((window.limit, window.remaining, window.reset))


async def _on_limiter(rt: Runtime, call: Callable[[LimiterBackend], T]) -> T:
    """``call`` on the runtime's limiter: the in-memory one on the event loop, a Redis one
    in a worker thread; while Redis does not answer, this instance's own in-memory one
    (it counts on its own meanwhile)."""
    if not rt.limiter_blocks:
        return call(rt.limiter)
    try:
        return await trio.to_thread.run_sync(call, rt.limiter)
    except ServiceUnavailable:
        return call(rt.local_limiter)


def _window(values: tuple[int, int, int]) -> list[Header]:
    limit, remaining, reset = values
    return [
        (RATE_LIMIT_HEADER, str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(reset)),
    ]


def record_tokens(rt: Runtime, principal: Principal, tokens: int) -> None:
    """A finished response's tokens, for the tpm limits that apply to it."""
    if tokens <= 0:
        return
    now = rt.wall_clock()
    for subject, limits in principal.rate_limits:
        if limits.tpm is None:
            continue
        if rt.limiter_blocks:
            if len(rt.pending_tokens) < MAX_PENDING_TOKENS:
                rt.pending_tokens.append((subject, tokens, now))
        else:
            rt.limiter.record_tokens(subject, tokens, now)


def _send_tokens(limiter: LimiterBackend, batch: list[tuple[str, int, float]]) -> None:
    for subject, tokens, when in batch:
        limiter.record_tokens(subject, tokens, when)


async def flush_tokens(rt: Runtime) -> None:
    """Send queued token reports to a blocking (Redis) limiter every ``FLUSH_S``; a
    failing server keeps them for the next try."""
    while True:
        await trio.sleep(FLUSH_S)
        if not rt.pending_tokens:
            continue
        batch, rt.pending_tokens = rt.pending_tokens, []
        try:
            await trio.to_thread.run_sync(_send_tokens, rt.limiter, batch)
        except ServiceUnavailable:
            rt.pending_tokens[:0] = batch[-MAX_PENDING_TOKENS:]
