"""aroutd.ratelimit.tokens: tpm_limit over the tokens reported in the last 60 s."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.ratelimit import Admitted, Limiter, Limits, Refused
from aroutd.ratelimit.ticks import to_ticks
from aroutd.ratelimit.tokens import TokenWindow

BASE = 1_767_225_600.0
KEY = "key:a"


def _ask(lim: Limiter, now: float, tpm: int) -> Admitted | Refused:
    return lim.check([(KEY, Limits(tpm=tpm))], now)


def _outcome(decision: Admitted | Refused) -> str | int:
    return "A" if isinstance(decision, Admitted) else decision.retry_after_s


@pytest.mark.parametrize(
    ("tpm", "reports", "asks", "expected"),
    [
        pytest.param(100, [(0, 100)], [0, 59.5, 60], [60, 1, "A"], id="at-the-limit"),
        pytest.param(101, [(0, 100)], [0], ["A"], id="below-the-limit"),
        pytest.param(100, [(0, 50), (10, 50)], [20, 59.5, 60], [40, 1, "A"], id="two-buckets"),
        pytest.param(
            60, [(0, 50), (10, 50), (20, 50)], [30], [40], id="several-buckets-must-leave"
        ),
        # same second: one bucket, leaving 60 s after its latest report
        pytest.param(20, [(0.1, 10), (0.9, 10)], [60.5, 60.9], [1, "A"], id="same-second"),
        pytest.param(20, [(0.9, 10), (1.1, 10)], [60.95, 61.1], ["A", "A"], id="next-second"),
        pytest.param(1, [(0, 0)], [0], ["A"], id="zero-tokens"),
        pytest.param(10, [(0, 10)], [-5], [65], id="a-clock-stepped-back"),
    ],
)
def test_tpm_table(
    tpm: int, reports: list[tuple[float, int]], asks: list[float], expected: list[str | int]
) -> None:
    lim = Limiter()
    for dt, tokens in reports:
        lim.record_tokens(KEY, tokens, BASE + dt)
    assert [_outcome(_ask(lim, BASE + dt, tpm)) for dt in asks] == expected


def test_an_admitted_request_consumes_no_tokens() -> None:
    lim = Limiter()
    assert all(isinstance(_ask(lim, BASE, 1), Admitted) for _ in range(1000))
    assert lim.resident == 0


def test_negative_tokens_are_a_bug() -> None:
    with pytest.raises(ValueError, match="tokens"):
        Limiter().record_tokens(KEY, -1, BASE)


def test_buckets_stay_bounded() -> None:
    window = TokenWindow()
    for i in range(5999):  # ten minutes, a report every 0.1 s
        window.add(7, to_ticks(BASE + i / 10))
    # second 539 (latest report 539.9) is still in, up to 599.8: 61 seconds, 609 reports
    t = to_ticks(BASE + 599.85)
    assert len(window.buckets(t)) == 61
    assert window.total == sum(b[2] for b in window.buckets(t)) == 7 * 609


# -- hypothesis --------------------------------------------------------------------------

_events = st.lists(
    st.tuples(st.floats(0, 20, allow_nan=False), st.one_of(st.none(), st.integers(0, 400))),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 1000), _events)
def test_tpm_retry_after_is_never_early(tpm: int, events: list[tuple[float, int | None]]) -> None:
    """Each event: a wait, then a check (None) or a report of that many tokens."""
    lim = Limiter()
    t = BASE
    for dt, tokens in events:
        t += dt
        if tokens is not None:
            lim.record_tokens(KEY, tokens, t)
            continue
        decision = _ask(lim, t, tpm)
        if isinstance(decision, Refused):
            r = decision.retry_after_s
            assert r >= 1 and decision.reason == "tpm"
            assert isinstance(_ask(copy.deepcopy(lim), t + r, tpm), Admitted)
            if r > 1:
                assert isinstance(_ask(copy.deepcopy(lim), t + r - 1, tpm), Refused)


@settings(max_examples=200, deadline=None)
@given(_events, st.floats(0, 200, allow_nan=False))
def test_the_window_holds_exactly_the_last_minutes_reports(
    events: list[tuple[float, int | None]], later: float
) -> None:
    """Tokens count while now < their second's latest report + 60 s: never less than 60 s."""
    window = TokenWindow()
    t, reports = BASE, []
    for dt, tokens in events:
        t += dt
        if tokens:
            window.add(tokens, to_ticks(t))
            reports.append((t, tokens))
    now = t + later
    latest = {int(rt): max(r for r, _ in reports if int(r) == int(rt)) for rt, _ in reports}
    expected = sum(n for rt, n in reports if now < latest[int(rt)] + 60)
    assert sum(b[2] for b in window.buckets(to_ticks(now))) == expected
    assert sum(n for rt, n in reports if now < rt + 60) <= expected
