"""SPEC §9 rate limits, pure: ``rpm_limit``, ``rpd_limit`` and ``tpm_limit`` of a key and,
with their own figures, its tenant or a wallet account. Nothing here does I/O or reads
a clock: ``now`` (Unix seconds) is passed in.

    ticks      Unix seconds as whole ticks (2**-32 s), UTC days, Retry-After rounding
    values     Limits, Window, the decisions (Admitted, Refused) and a checked Step
    gcra       rpm: a token bucket refilled evenly over a minute, as GCRA (one TAT)
    daily      rpd: requests per UTC day, reset at 00:00 UTC
    tokens     tpm: tokens reported in the last 60 s, in one-second buckets
    nearest    the X-RateLimit-* window nearest to refusing, as three integers
    backend    LimiterBackend, the protocol a Redis backend implements too
    limiter    Limiter: check all limits of all subjects, commit only if all admit; sweep
"""

from __future__ import annotations

from aroutd.ratelimit.backend import LimiterBackend
from aroutd.ratelimit.limiter import Limiter, Snapshot
from aroutd.ratelimit.nearest import header_values, nearest
from aroutd.ratelimit.values import Admitted, Decision, Limits, Reason, Refused, Subject, Window

__all__ = [
    "Admitted",
    "Decision",
    "Limiter",
    "LimiterBackend",
    "Limits",
    "Reason",
    "Refused",
    "Snapshot",
    "Subject",
    "Window",
    "header_values",
    "nearest",
]
