"""SPEC §9 ``rpd_limit``: requests counted per UTC day, reset at 00:00 UTC.

The state is ``(day, count)``; a count from another day is zero, so no reset job is
needed. A request is admitted while ``count < limit``; refused, it may come back at
the next 00:00 UTC, which is also the window's reset. A changed limit applies to the
day's count as it stands. Pure: the day is computed from ``now`` (ticks).
"""

from __future__ import annotations

from aroutd.ratelimit.ticks import TICKS_PER_S, next_midnight_s, utc_day
from aroutd.ratelimit.values import Step, Subject

__all__ = ["DayCount", "rpd_step"]

DayCount = tuple[int, int]  # (UTC day number, requests admitted that day)


def rpd_step(subject: Subject, state: DayCount | None, limit: int, now: int) -> Step:
    """Check one ``rpd_limit`` at ``now`` (ticks) against the stored day count."""
    count = state[1] if state is not None and state[0] == utc_day(now) else 0
    midnight = next_midnight_s(now)
    return Step(  # positional, as gcra's
        "rpd",
        subject,
        0 if count < limit else midnight * TICKS_PER_S - now,  # wait_ticks
        count + 1,  # state_after
        limit,
        max(0, limit - count),  # remaining
        midnight,  # reset_s
        midnight,  # reset_after_s
    )
