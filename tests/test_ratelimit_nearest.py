"""aroutd.ratelimit.nearest: the X-RateLimit-* window nearest to refusing a request."""

from __future__ import annotations

import pytest

from aroutd.ratelimit import Admitted, Limiter, Limits, Refused, Window, header_values, nearest
from aroutd.ratelimit.values import Step

BASE = 1_767_225_600.0  # 2026-01-01 00:00 UTC
MIDNIGHT = 1_767_312_000  # the next one
KEY, TENANT = "key:a", "tenant:t"


def _w(limit: int, remaining: int, reset: int = 0) -> Window:
    return Window(limit=limit, remaining=remaining, reset=reset)


def _s(limit: int, remaining: int, reset: int = 0) -> Step:
    """A checked rpm/rpd step with ``remaining`` before the request; reset after: +1."""
    return Step("rpm", KEY, 0 if remaining else 1, 0, limit, remaining, reset, reset + 1)


TPM = Step("tpm", KEY, 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("steps", "admitted", "chosen"),
    [
        pytest.param([_s(10, 10), _s(100, 6)], True, _w(100, 5, 1), id="fewest-remaining"),
        pytest.param([_s(10, 6), _s(100, 6)], True, _w(10, 5, 1), id="tie-smaller-limit"),
        pytest.param([_s(10, 6, 1), _s(10, 6, 2)], True, _w(10, 5, 2), id="tie-first-checked"),
        pytest.param([_s(10, 9, 7), _s(100, 50)], False, _w(10, 0, 7), id="refused-shows-0"),
        pytest.param([_s(10, 0, 7), _s(5, 3)], False, _w(10, 0, 7), id="refused-the-refusing"),
        pytest.param([TPM, _s(3, 2), TPM], True, _w(3, 1, 1), id="tpm-has-none"),
        pytest.param([_s(10, 9, 7), _s(100, 50)], None, _w(10, 9, 7), id="peeked-as-it-stands"),
        pytest.param([_s(10, 0, 7), _s(5, 3)], None, _w(10, 0, 7), id="peeked-exhausted"),
        pytest.param([TPM], True, None, id="no-rpm-or-rpd"),
        pytest.param([], False, None, id="no-limits"),
    ],
)
def test_nearest(steps: list[Step], admitted: bool | None, chosen: Window | None) -> None:
    assert nearest(steps, admitted=admitted) == chosen


def test_the_tenant_nearer_to_refusing_than_the_key_is_shown() -> None:
    lim = Limiter()
    for _ in range(96):
        lim.check([("key:other", Limits(rpm=1000)), (TENANT, Limits(rpm=100))], BASE)
    decision = lim.check([(KEY, Limits(rpm=10)), (TENANT, Limits(rpm=100))], BASE)
    # 97 of 100 used: the bucket is full again in 97 × 0.6 s = 58.2 s, rounded up
    assert header_values(decision) == (100, 3, int(BASE) + 59)


def test_a_tie_goes_to_the_smaller_limit_rpd_against_rpm() -> None:
    lim = Limiter()
    decision = lim.check([(KEY, Limits(rpd=5)), (TENANT, Limits(rpm=10))], BASE)
    assert header_values(decision) == (5, 4, MIDNIGHT)


def test_refused_by_tpm_shows_the_rpm_window_with_nothing_remaining() -> None:
    lim = Limiter()
    lim.record_tokens(TENANT, 1000, BASE)
    decision = lim.check([(KEY, Limits(rpm=10)), (TENANT, Limits(tpm=1000))], BASE + 1)
    assert isinstance(decision, Refused) and decision.reason == "tpm"
    # the key's bucket is full (nothing consumed): its reset is now, rounded up
    assert header_values(decision) == (10, 0, int(BASE) + 1)


def test_refused_by_rpm_shows_the_refusing_window() -> None:
    lim = Limiter()
    checks = [(KEY, Limits(rpm=2, rpd=1000)), (TENANT, Limits(rpd=50))]
    for _ in range(2):
        lim.check(checks, BASE)
    decision = lim.check(checks, BASE)
    assert isinstance(decision, Refused) and decision.reason == "rpm"
    assert header_values(decision) == (2, 0, int(BASE) + 60)


def test_tpm_alone_gives_no_headers() -> None:
    decision = Limiter().check([(KEY, Limits(tpm=5))], BASE)
    assert decision == Admitted(window=None) and header_values(decision) is None


def test_header_values_are_ints() -> None:
    decision = Limiter().check([(KEY, Limits(rpm=7))], BASE + 0.3)
    values = header_values(decision)
    assert values == (7, 6, int(BASE) + 9) and all(type(v) is int for v in values)
