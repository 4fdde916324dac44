"""aroutd.ratelimit.daily and ticks: rpd_limit per UTC day, reset at 00:00 UTC."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.ratelimit import Admitted, Limiter, Limits, Refused, Window
from aroutd.ratelimit.ticks import (
    TICKS_PER_S,
    ceil_s,
    next_midnight_s,
    retry_after_s,
    to_ticks,
    utc_day,
)

MIDNIGHT = 1_767_225_600  # 2026-01-01 00:00 UTC
KEY = "key:a"


def _ask(lim: Limiter, now: float, rpd: int) -> Admitted | Refused:
    return lim.check([(KEY, Limits(rpd=rpd))], now)


def _outcome(decision: Admitted | Refused) -> str | int:
    return "A" if isinstance(decision, Admitted) else decision.retry_after_s


@pytest.mark.parametrize(
    ("rpd", "offsets", "expected"),
    [
        pytest.param(2, [-60, -60, -60, 0], ["A", "A", 60, "A"], id="refused-until-midnight"),
        pytest.param(1, [-0.5, -0.25, 0], ["A", 1, "A"], id="half-a-second-before-is-1"),
        pytest.param(1, [-86_400, -1, -0.0001], ["A", 1, 1], id="whole-day-is-one-day"),
        pytest.param(1, [0, 86_399.75], ["A", 1], id="last-moment-of-the-day"),
        pytest.param(1, [0, 43_200], ["A", 43_200], id="noon"),
        pytest.param(3, [0, 1, 2, 86_400, 86_400], ["A"] * 5, id="new-day-new-count"),
    ],
)
def test_rpd_table(rpd: int, offsets: list[float], expected: list[str | int]) -> None:
    lim = Limiter()
    assert [_outcome(_ask(lim, MIDNIGHT + dt, rpd)) for dt in offsets] == expected


def test_window_resets_at_the_next_utc_midnight() -> None:
    lim = Limiter()
    assert _ask(lim, MIDNIGHT - 3600.5, 5) == Admitted(
        window=Window(limit=5, remaining=4, reset=MIDNIGHT)
    )
    for _ in range(4):
        _ask(lim, MIDNIGHT - 10, 5)
    refused = _ask(lim, MIDNIGHT - 10, 5)
    assert refused == Refused(
        reason="rpd",
        subject=KEY,
        retry_after_s=10,
        window=Window(limit=5, remaining=0, reset=MIDNIGHT),
    )


def test_a_changed_limit_applies_to_the_days_count() -> None:
    lim = Limiter()
    for _ in range(3):
        _ask(lim, MIDNIGHT + 5, 10)
    lowered = _ask(lim, MIDNIGHT + 6, 2)
    assert isinstance(lowered, Refused) and lowered.window == Window(
        limit=2, remaining=0, reset=MIDNIGHT + 86_400
    )
    assert _ask(lim, MIDNIGHT + 7, 4) == Admitted(
        window=Window(limit=4, remaining=0, reset=MIDNIGHT + 86_400)
    )


# -- ticks -------------------------------------------------------------------------------

_unix = st.floats(2.0**20, 4e9, allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(_unix)
def test_ticks_are_exact_for_unix_times(now: float) -> None:
    assert to_ticks(now) == Fraction(now) * TICKS_PER_S


@settings(max_examples=500, deadline=None)
@given(st.floats(0, 4e9, allow_nan=False))
def test_the_utc_day_agrees_with_datetime(now: float) -> None:
    moment = datetime.fromtimestamp(now, UTC)
    expected = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    t = to_ticks(now)
    # datetime rounds to microseconds: skip the last microsecond of a day
    if moment.time() != datetime.max.time():
        assert next_midnight_s(t) == int(expected.timestamp())
        assert utc_day(t) == (moment.date() - datetime(1970, 1, 1).date()).days


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(0, 1), (1, 1), (TICKS_PER_S, 1), (TICKS_PER_S + 1, 2), (60 * TICKS_PER_S - 1, 60)],
)
def test_retry_after_is_whole_seconds_at_least_one(wait: int, expected: int) -> None:
    assert retry_after_s(wait) == expected and type(retry_after_s(wait)) is int


def test_ceil_s() -> None:
    assert [ceil_s(n) for n in (-1, 0, 1, TICKS_PER_S)] == [0, 0, 1, 1]


# -- hypothesis --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.lists(st.floats(-1, 3 * 86_400, allow_nan=False), max_size=40))
def test_rpd_retry_after_is_never_early(rpd: int, offsets: list[float]) -> None:
    lim = Limiter()
    for t in sorted(MIDNIGHT + dt for dt in offsets):
        decision = _ask(lim, t, rpd)
        if isinstance(decision, Refused):
            r = decision.retry_after_s
            assert r >= 1 and t + r >= next_midnight_s(to_ticks(t))
            assert isinstance(_ask(copy.deepcopy(lim), t + r, rpd), Admitted)
            if r > 1:
                assert isinstance(_ask(copy.deepcopy(lim), t + r - 1, rpd), Refused)
