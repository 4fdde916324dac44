"""Rate limits on the request path (SPEC §9): checked, answered, and fed tokens.

:func:`admit` runs after scope, spending limits and a wallet's balance, just before the
request is forwarded: the principal's limits (its key and tenant, or its wallet) are
checked at once in the runtime's limiter; a refused request is 429 ``rate limit
exceeded`` with ``Retry-After`` and counts nothing. Every answer to a principal with an
rpm or rpd limit carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix
seconds) of the window nearest to refusing it. A finished response's input and output
tokens go to the tpm windows (:func:`record_tokens`) when its usage is known.

The in-memory limiter counts per instance; it never blocks, so it runs on the event
loop.
"""

from __future__ import annotations

from aroutd.accesslog import AccessRecord
from aroutd.errors import TooManyRequests
from aroutd.principal import Principal
from aroutd.ratelimit import Refused, header_values
from aroutd.shell.runtime import Runtime

__all__ = ["MSG_RATE_LIMITED", "admit", "record_tokens"]

MSG_RATE_LIMITED = "rate limit exceeded"

Header = tuple[str, str]


def admit(rt: Runtime, principal: Principal, rec: AccessRecord) -> list[Header]:
    """The ``X-RateLimit-*`` headers of an admitted request; else the 429."""
    if not principal.rate_limits:
        return []
    decision = rt.limiter.check(principal.rate_limits, rt.wall_clock())
    values = header_values(decision)
    headers = [] if values is None else _window(values)
    if isinstance(decision, Refused):
        rt.metrics.rate_limited[(decision.reason, principal.kind)] += 1
        rec.rate_limit = decision.reason
        retry = [("Retry-After", str(decision.retry_after_s))]
        raise TooManyRequests(MSG_RATE_LIMITED, headers=retry + headers)
    return headers


def _window(values: tuple[int, int, int]) -> list[Header]:
    limit, remaining, reset = values
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(reset)),
    ]


def record_tokens(rt: Runtime, principal: Principal, tokens: int) -> None:
    """A finished response's tokens, for the tpm limits that apply to it."""
    if tokens <= 0:
        return
    now = rt.wall_clock()
    for subject, limits in principal.rate_limits:
        if limits.tpm is not None:
            rt.limiter.record_tokens(subject, tokens, now)
