"""SPEC §9 ``X-RateLimit-*``: the window nearest to refusing a request.

Every answer to a principal with an ``rpm_limit`` or ``rpd_limit`` carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``. Of all the
rpm and rpd limits that applied, across every subject (key, tenant, wallet), the one
with the fewest requests remaining is shown; a tie goes to the smaller limit, then to
the first checked (the key before its tenant). Remaining is after this request when
it was admitted, 0 when it was refused, and as it stands for an answer that counted
nothing (one given before the check, or by an endpoint that is not limited: its window
is peeked at). Reset is in Unix seconds: for rpm when the bucket is full again (rounded
up), for rpd the next 00:00 UTC. tpm limits have no such headers. Pure functions; the
shell formats the integers.
"""

from __future__ import annotations

from collections.abc import Iterable

from aroutd.ratelimit.values import Decision, Step, Window

__all__ = ["header_values", "nearest"]


def nearest(steps: Iterable[Step], *, admitted: bool | None) -> Window | None:
    """The window to show, of the checked ``steps`` (tpm steps skipped); None if none.

    When ``admitted`` every step had at least one request left, so the fewest left after
    this one is the fewest before it, less one: both pick the same step. When refused
    (False), the windows are as they stand, with 0 remaining (the refusing rpm or rpd
    limit has 0 left, and is chosen). None: nothing was counted, the windows as they
    stand."""
    chosen: Step | None = None
    for step in steps:
        if not step.limit:
            continue
        if (
            chosen is None
            or step.remaining < chosen.remaining
            or (step.remaining == chosen.remaining and step.limit < chosen.limit)
        ):
            chosen = step
    if chosen is None:
        return None
    if admitted:
        return Window(chosen.limit, chosen.remaining - 1, chosen.reset_after_s)
    return Window(chosen.limit, 0 if admitted is False else chosen.remaining, chosen.reset_s)


def header_values(decision: Decision) -> tuple[int, int, int] | None:
    """``(X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset)``, or None: no headers."""
    window = decision.window
    return None if window is None else (window.limit, window.remaining, window.reset)
