"""SPEC §9 ``X-RateLimit-*``: the window nearest to refusing a request.

Every answer to a principal with an ``rpm_limit`` or ``rpd_limit`` carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``. Of all the
rpm and rpd limits that applied, across every subject (key, tenant, wallet), the one
with the fewest requests remaining is shown; a tie goes to the smaller limit, then to
the first checked (the key before its tenant). Remaining is after this request when
it was admitted, and 0 when it was refused. Reset is in Unix seconds: for rpm when the
bucket is full again (rounded up), for rpd the next 00:00 UTC. tpm limits have no
such headers. Pure functions; the shell formats the integers.
"""

from __future__ import annotations

from collections.abc import Iterable

from aroutd.ratelimit.values import Decision, Window

__all__ = ["header_values", "nearest"]


def nearest(windows: Iterable[Window | None], *, admitted: bool) -> Window | None:
    """The window to show, of those given (None entries skipped); None if there is none.

    ``windows`` are each limit's state after the request when ``admitted``, and as it
    stands when refused (then the refusing rpm or rpd limit has 0 left, and is chosen)."""
    chosen = min(
        (w for w in windows if w is not None),
        key=lambda w: (w.remaining, w.limit),
        default=None,
    )
    if chosen is None or admitted:
        return chosen
    return chosen._replace(remaining=0)


def header_values(decision: Decision) -> tuple[int, int, int] | None:
    """``(X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset)``, or None: no headers."""
    window = decision.window
    return None if window is None else (window.limit, window.remaining, window.reset)
