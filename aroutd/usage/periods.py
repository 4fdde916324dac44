"""Spending periods (SPEC §9): when the current day, week and month began, in UTC.

A limit with ``limit_reset`` counts the usage since the start of the current period:
00:00 UTC for ``daily``, Monday 00:00 UTC for ``weekly``, the 1st 00:00 UTC for
``monthly``; no ``limit_reset`` is a lifetime limit. Counters are kept per period under
the key :func:`period_key` gives, so a new period starts at zero without any reset job.
Pure: ``now`` in, datetimes and strings out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["PERIODS", "period_key", "period_start"]

PERIODS = ("daily", "weekly", "monthly")


def period_start(reset: str | None, now: datetime) -> datetime | None:
    """The start of the current ``reset`` period at ``now`` (aware); None for lifetime."""
    if reset is None:
        return None
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        return day
    if reset == "weekly":
        return day - timedelta(days=day.weekday())  # Monday is 0
    if reset == "monthly":
        return day.replace(day=1)
    raise ValueError(f"unknown limit_reset {reset!r}")


def period_key(reset: str | None, now: datetime) -> str:
    """The counter key of the current period: ``lifetime``, ``daily:2026-12-01``,
    ``weekly:2026-11-30`` (its Monday), ``monthly:2026-12-01``."""
    start = period_start(reset, now)
    return "lifetime" if start is None else f"{reset}:{start.date().isoformat()}"
