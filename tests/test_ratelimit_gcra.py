"""aroutd.ratelimit.gcra: rpm_limit as GCRA, burst L, steady rate L per minute, exact bounds."""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.ratelimit import Admitted, Limiter, Limits, Refused, Window
from aroutd.ratelimit.gcra import emission_ticks
from aroutd.ratelimit.ticks import TICKS_PER_S

BASE = 1_767_225_600.0  # 2026-01-01 00:00 UTC
KEY = "key:a"


def _ask(lim: Limiter, now: float, rpm: int) -> Admitted | Refused:
    return lim.check([(KEY, Limits(rpm=rpm))], now)


def _outcome(decision: Admitted | Refused) -> str | int:
    return "A" if isinstance(decision, Admitted) else decision.retry_after_s


@pytest.mark.parametrize(
    ("rpm", "offsets", "expected"),
    [
        pytest.param(3, [0, 0, 0, 0], ["A", "A", "A", 20], id="burst-then-one-interval"),
        pytest.param(3, [0, 0, 0, 20], ["A", "A", "A", "A"], id="exactly-one-interval-later"),
        pytest.param(3, [0, 0, 0, 19.5], ["A", "A", "A", 1], id="half-a-second-early"),
        pytest.param(7, [0] * 8, ["A"] * 7 + [9], id="60/7-rounded-up"),
        pytest.param(1, [0, 59.5, 60], ["A", 1, "A"], id="one-per-minute"),
        pytest.param(120, [0] * 120 + [0.5], ["A"] * 121, id="two-per-second"),
        pytest.param(2, [0, 0, 0, 29, 30, 30], ["A", "A", 30, 1, "A", 30], id="refill-then-empty"),
        pytest.param(6, [0, 10, 20, 30], ["A"] * 4, id="steady-rate-never-refused"),
    ],
)
def test_rpm_table(rpm: int, offsets: list[float], expected: list[str | int]) -> None:
    lim = Limiter()
    assert [_outcome(_ask(lim, BASE + dt, rpm)) for dt in offsets] == expected


@pytest.mark.parametrize("rpm", [1, 2, 7, 60, 1000, 12_345])
def test_a_burst_of_twice_the_limit_at_one_instant_admits_exactly_the_limit(rpm: int) -> None:
    lim = Limiter()
    decisions = [_ask(lim, BASE + 0.25, rpm) for _ in range(2 * rpm)]
    assert sum(isinstance(d, Admitted) for d in decisions) == rpm
    assert all(isinstance(d, Admitted) for d in decisions[:rpm])
    refused = decisions[rpm:]
    assert all(isinstance(d, Refused) and d.reason == "rpm" for d in refused)


def test_the_bound_is_reached_burst_then_steady_rate() -> None:
    # L + floor(w × L / 60) in [0, 60]: 6 at once, then one every 10 s: 12, all admitted
    lim = Limiter()
    times = [BASE] * 6 + [BASE + 10 * k for k in range(1, 7)]
    assert all(isinstance(_ask(lim, t, 6), Admitted) for t in times)
    assert isinstance(_ask(lim, BASE + 60, 6), Refused)


@pytest.mark.parametrize(
    ("used", "offset", "window"),
    [
        pytest.param(1, 0.0, Window(limit=10, remaining=9, reset=int(BASE) + 6), id="one"),
        pytest.param(10, 0.0, Window(limit=10, remaining=0, reset=int(BASE) + 60), id="all"),
        pytest.param(1, 0.5, Window(limit=10, remaining=9, reset=int(BASE) + 7), id="ceil"),
    ],
)
def test_window_after_admission(used: int, offset: float, window: Window) -> None:
    lim = Limiter()
    decisions = [_ask(lim, BASE + offset, 10) for _ in range(used)]
    assert decisions[-1] == Admitted(window=window)


@pytest.mark.parametrize(
    ("old", "used", "new", "then"),
    [
        # half the minute used stays half: 6 of 12 left, then one per 5 s
        pytest.param(120, 60, 12, ["A"] * 6 + [5], id="lowered-keeps-the-share"),
        # an empty bucket stays empty but refills at the new rate (one per 3 s)
        pytest.param(10, 10, 20, [3], id="raised-refills-faster"),
        # 7 × ceil(60/7 s) is 60 s and 5 ticks: clamped to the new burst, 60 s, not 61
        pytest.param(7, 7, 1, [60], id="clamped-to-the-new-burst"),
        pytest.param(1, 1, 1000, [1], id="raised-a-lot"),
    ],
)
def test_a_changed_limit_applies_to_the_next_request(
    old: int, used: int, new: int, then: list[str | int]
) -> None:
    lim = Limiter()
    assert all(isinstance(_ask(lim, BASE, old), Admitted) for _ in range(used))
    assert [_outcome(_ask(lim, BASE, new)) for _ in then] == then


def test_a_clock_stepped_back_waits_at_most_a_minute() -> None:
    lim = Limiter()
    for _ in range(10):
        _ask(lim, BASE, 10)
    decision = _ask(lim, BASE - 3600, 10)
    assert isinstance(decision, Refused) and decision.retry_after_s == 6


def test_emission_interval_is_rounded_up_to_a_tick() -> None:
    assert emission_ticks(60) == TICKS_PER_S
    assert emission_ticks(7) * 7 - 60 * TICKS_PER_S == 5
    assert emission_ticks(7) >= Fraction(60 * TICKS_PER_S, 7)


# -- hypothesis --------------------------------------------------------------------------

_offsets = st.lists(st.floats(0, 240, allow_nan=False), min_size=1, max_size=120)


def _admitted_times(rpm: int, offsets: list[float]) -> list[float]:
    lim = Limiter()
    times = sorted(BASE + dt for dt in offsets)
    return [t for t in times if isinstance(_ask(lim, t, rpm), Admitted)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), _offsets)
def test_tight_gcra_bound_in_every_window(rpm: int, offsets: list[float]) -> None:
    """In any closed window of length w: admitted <= L + floor(w × L / 60)."""
    admitted = [Fraction(t) for t in _admitted_times(rpm, offsets)]
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            w = admitted[j] - first
            assert j - i + 1 <= rpm + math.floor(w * rpm / 60), (rpm, first, admitted[j])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), _offsets)
def test_no_minute_admits_more_than_twice_the_limit(rpm: int, offsets: list[float]) -> None:
    admitted = _admitted_times(rpm, offsets)
    for i, first in enumerate(admitted):
        assert sum(first <= t < first + 60 for t in admitted[i:]) <= 2 * rpm


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), _offsets)
def test_retry_after_is_never_early_and_never_a_second_late(rpm: int, offsets: list[float]) -> None:
    lim = Limiter()
    for t in sorted(BASE + dt for dt in offsets):
        decision = _ask(lim, t, rpm)
        if isinstance(decision, Refused):
            r = decision.retry_after_s
            assert type(r) is int and r >= 1
            assert isinstance(_ask(copy.deepcopy(lim), t + r, rpm), Admitted)
            if r > 1:
                assert isinstance(_ask(copy.deepcopy(lim), t + r - 1, rpm), Refused)
