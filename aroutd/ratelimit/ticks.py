"""Time for the rate limiter (SPEC §9): Unix seconds in, whole ticks out.

The limiter counts on integers so that no limit drifts by float rounding (a bucket
refilled by ``60 / 7`` s seven times must be exactly full again). A time is
``floor(now × 2**32)`` ticks: multiplying a float by a power of two is exact, and
every float at or after 2**20 s (1970-01-13) is a whole number of ticks, so a real
Unix clock loses nothing in the conversion. Unix time counts no leap seconds, so a
UTC day is exactly 86 400 s and day ``n`` begins at ``n × 86 400`` (00:00 UTC).
Pure: the caller passes ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import math

__all__ = [
    "DAY_S",
    "TICKS_PER_S",
    "TICK_BITS",
    "ceil_s",
    "next_midnight_s",
    "retry_after_s",
    "to_ticks",
    "utc_day",
]

TICK_BITS = 32
TICKS_PER_S = 1 << TICK_BITS
DAY_S = 86_400

# A time in ticks is a 63-bit integer, three digits of CPython's: whole seconds are
# taken by a shift, which costs a third of a division (measured with callgrind); that
# matters, as every request of a limited principal makes several.


def to_ticks(now: float) -> int:
    """``now`` (Unix seconds) in ticks, rounded down."""
    return math.floor(now * TICKS_PER_S)


def ceil_s(ticks: int) -> int:
    """The first whole Unix second at or after ``ticks``."""
    return -(-ticks >> TICK_BITS)


def retry_after_s(wait_ticks: int) -> int:
    """SPEC §9 ``Retry-After``: whole seconds, at least 1, never before the wait ends."""
    return max(1, ceil_s(wait_ticks))


def utc_day(ticks: int) -> int:
    """The number of the UTC day holding ``ticks`` (day 0 began 1970-01-01 00:00 UTC)."""
    return (ticks >> TICK_BITS) // DAY_S


def next_midnight_s(ticks: int) -> int:
    """The next 00:00 UTC after ``ticks``, in Unix seconds."""
    return (utc_day(ticks) + 1) * DAY_S
