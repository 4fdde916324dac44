"""SPEC §9 ``rpm_limit``: a token bucket of ``L`` requests refilled evenly over a minute,
as GCRA (the generic cell rate algorithm, ITU-T I.371 virtual scheduling).

The one number of state is the theoretical arrival time (TAT): when the bucket is
full again. The emission interval is ``T = 60 / L`` s, rounded up to a whole tick so
that the arithmetic is exact, and the bucket holds ``L × T`` (60 s, plus at most ``L``
ticks). A request at ``now`` starts from ``start = max(TAT, now)``; it is admitted
when ``start + T - now <= L × T``, and then ``TAT = start + T``. A TAT at or before
``now`` is a full bucket, the same as no state at all.

Bounds: ``L`` requests at one instant are admitted, the next one ``T`` later; in any
closed window of length ``w`` at most ``L + floor(w × L / 60)`` are admitted, since
admitted arrivals ``t_1 … t_n`` satisfy ``t_n - t_1 >= (n - L) × T``.

A changed limit: the TAT is read as how long until the bucket is full again, so the
same share of the minute stays used (120 → 12 with 30 s to refill leaves 6 of 12;
with a ``T`` rounded up, a tick more used may round the share down by one).
It is clamped to ``now + L × T``: at most the new burst is owed, never more than
about a minute to wait; this also bounds the wait after a clock stepped back.
"""

from __future__ import annotations

from aroutd.ratelimit.ticks import TICKS_PER_S, ceil_s
from aroutd.ratelimit.values import Step, Subject

__all__ = ["MINUTE_S", "emission_ticks", "rpm_step"]

MINUTE_S = 60


def emission_ticks(limit: int) -> int:
    """``T``: the ticks between two requests at the steady rate, rounded up."""
    return -(-MINUTE_S * TICKS_PER_S // limit)


def rpm_step(subject: Subject, tat: int | None, limit: int, now: int) -> Step:
    """Check one ``rpm_limit`` at ``now`` (ticks) against the stored ``tat`` (None: full)."""
    interval = emission_ticks(limit)
    capacity = limit * interval
    start = tat if tat is not None and tat > now else now  # max(TAT, now), None: now
    if start > now + capacity:  # the clamp (a lowered limit, a clock stepped back)
        start = now + capacity
    after = start + interval
    # positional: a named tuple built by keyword costs twice as much (measured), and
    # this runs for every request of a limited principal
    return Step(
        "rpm",
        subject,
        max(0, after - capacity - now),  # wait_ticks
        after,  # state_after: the TAT
        limit,
        (capacity - (start - now)) // interval,  # remaining: admissible now; 0 iff refused
        ceil_s(start),  # reset_s
        ceil_s(after),  # reset_after_s
    )
