"""aroutd.ratelimit.limiter: every limit of every subject at once, commit only if all admit."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.ratelimit import Admitted, Limiter, LimiterBackend, Limits, Refused, Window
from aroutd.ratelimit.limiter import SWEEP_MIN_ENTRIES

BASE = 1_767_225_600.0  # 2026-01-01 00:00 UTC
MIDNIGHT = 1_767_312_000  # the next one
KEY, TENANT = "key:a", "tenant:t"


def test_the_limiter_is_a_backend() -> None:
    backend: LimiterBackend = Limiter()
    assert isinstance(backend.check([], BASE), Admitted)


@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"rpd": -1}, {"tpm": True}, {"rpm": 1.5}], ids=str)
def test_a_limit_is_a_positive_integer(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_a_subject_checked_twice_is_a_bug() -> None:
    with pytest.raises(ValueError, match="twice"):
        Limiter().check([(KEY, Limits(rpm=1)), (KEY, Limits(rpd=1))], BASE)


def test_the_tenant_refuses_and_the_key_keeps_its_figures() -> None:
    lim = Limiter()
    checks = [(KEY, Limits(rpm=5, rpd=100)), (TENANT, Limits(rpm=2))]
    assert all(isinstance(lim.check(checks, BASE), Admitted) for _ in range(2))
    before = lim.snapshot(BASE)
    refused = lim.check(checks, BASE)
    assert refused == Refused(
        reason="rpm",
        subject=TENANT,
        retry_after_s=30,
        window=Window(limit=2, remaining=0, reset=int(BASE) + 60),
    )
    assert lim.snapshot(BASE) == before
    assert before.rpd == {KEY: (20454, 2)}  # 2026-01-01 is UTC day 20454
    # the key alone (another tenant) still has exactly 3 of its 5
    other = [(KEY, Limits(rpm=5, rpd=100)), ("tenant:u", Limits(rpm=100))]
    outcomes = [isinstance(lim.check(other, BASE), Admitted) for _ in range(4)]
    assert outcomes == [True, True, True, False]


def test_the_tenants_day_refuses_and_the_keys_bucket_keeps_its_tokens() -> None:
    lim = Limiter()
    lim.check([("key:b", Limits(rpm=1)), (TENANT, Limits(rpd=1))], BASE)
    refused = lim.check([(KEY, Limits(rpm=1)), (TENANT, Limits(rpd=1))], BASE + 1)
    assert isinstance(refused, Refused) and refused.reason == "rpd"
    assert refused.retry_after_s == MIDNIGHT - int(BASE) - 1
    assert KEY not in lim.snapshot(BASE + 1).rpm
    assert isinstance(lim.check([(KEY, Limits(rpm=1))], BASE + 1), Admitted)


def test_retry_after_is_the_longest_wait() -> None:
    lim = Limiter()
    lim.check([(KEY, Limits(rpm=10))], BASE)
    lim.record_tokens(TENANT, 500, BASE + 20)
    for _ in range(9):
        lim.check([(KEY, Limits(rpm=10))], BASE + 20)
    refused = lim.check([(KEY, Limits(rpm=10)), (TENANT, Limits(tpm=500))], BASE + 20)
    # the key waits until 6 s after its bucket's last free slot, the tenant 60 s
    assert isinstance(refused, Refused)
    assert (refused.reason, refused.subject, refused.retry_after_s) == ("tpm", TENANT, 60)
    assert isinstance(lim.check([(KEY, Limits(rpm=10))], BASE + 20 + 6), Admitted)


# -- hypothesis: several subjects, any limits --------------------------------------------

_limits = st.builds(
    Limits,
    rpm=st.one_of(st.none(), st.integers(1, 5)),
    rpd=st.one_of(st.none(), st.integers(1, 8)),
    tpm=st.one_of(st.none(), st.integers(1, 300)),
)
_subjects = st.sampled_from(["key:a", "key:b", "tenant:t", "wallet:w"])
_check = st.lists(st.tuples(_subjects, _limits), max_size=3, unique_by=lambda c: c[0])
_event = st.tuples(
    st.floats(0, 9_000, allow_nan=False),
    st.one_of(_check, st.tuples(_subjects, st.integers(0, 200))),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_event, max_size=50))
def test_a_refused_request_changes_nothing_and_retry_after_is_never_early(
    events: list[tuple[float, list[tuple[str, Limits]] | tuple[str, int]]],
) -> None:
    """Also: a peek counts nothing and shows the window the check then shows, less the
    request it counted (admitted) or with nothing remaining (refused)."""
    lim = Limiter()
    t = BASE + 86_000  # near a midnight, so days roll over too
    for dt, event in events:
        t += dt
        if isinstance(event, tuple):
            lim.record_tokens(event[0], event[1], t)
            continue
        before = lim.snapshot(t)
        peeked = lim.peek(event, t)
        assert lim.snapshot(t) == before
        decision = lim.check(event, t)
        assert (peeked is None) == (decision.window is None)
        if isinstance(decision, Admitted):
            if peeked is not None and decision.window is not None:
                assert decision.window.limit == peeked.limit
                assert decision.window.remaining == peeked.remaining - 1
            continue
        assert decision.window == (None if peeked is None else peeked._replace(remaining=0))
        assert lim.snapshot(t) == before
        r = decision.retry_after_s
        assert type(r) is int and r >= 1
        assert isinstance(copy.deepcopy(lim).check(event, t + r), Admitted)
        if r > 1:
            assert isinstance(copy.deepcopy(lim).check(event, t + r - 1), Refused)


# -- memory ------------------------------------------------------------------------------


def test_subjects_used_once_do_not_stay_resident() -> None:
    """100k subjects, 10k a minute, each once with rpm and tpm: about 2 minutes stay."""
    lim, peak, per_round = Limiter(), 0, 10_000
    for r in range(10):
        now = BASE + 61 * r
        for i in range(per_round):
            subject = f"key:{r}-{i}"
            assert isinstance(lim.check([(subject, Limits(rpm=10, tpm=1000))], now), Admitted)
            lim.record_tokens(subject, 5, now)
            peak = max(peak, lim.resident)
    assert peak <= 2 * (2 * per_round) + SWEEP_MIN_ENTRIES  # two entries a subject
    resident = lim.resident
    assert lim.sweep(now) == resident - 2 * per_round and lim.resident == 2 * per_round
    assert lim.sweep(now + 60) == 2 * per_round and lim.resident == 0


def test_resident_stays_within_twice_the_live_state_when_requests_bring_many_subjects() -> None:
    """Each request a new key, tenant and wallet: 3 entries an operation, 6000 a minute."""
    lim, peak, per_round = Limiter(), 0, 2000
    for r in range(10):
        for i in range(per_round):
            checks = [(f"{kind}:{r}-{i}", Limits(rpm=5)) for kind in ("key", "tenant", "wallet")]
            lim.check(checks, BASE + 61 * r)
            peak = max(peak, lim.resident)
    assert peak <= 2 * (3 * per_round) + SWEEP_MIN_ENTRIES


def test_stale_state_goes_after_enough_operations_even_with_no_new_subject() -> None:
    lim = Limiter()
    for i in range(5000):
        lim.check([(f"key:{i}", Limits(rpm=60))], BASE)
    assert lim.resident == 5000
    for _ in range(5000 + SWEEP_MIN_ENTRIES):
        lim.check([(KEY, Limits(rpm=60))], BASE + 61)
    assert lim.resident == 1


def test_a_daily_count_lives_until_midnight_and_not_after() -> None:
    lim = Limiter()
    for i in range(20_000):
        lim.check([(f"key:d{i}", Limits(rpd=3))], MIDNIGHT - 86_000 + i)
    late = MIDNIGHT - 0.5
    assert lim.sweep(late) == 0 and lim.resident == 20_000
    assert isinstance(lim.check([("key:d0", Limits(rpd=1))], late), Refused)
    # the next day's subjects sweep yesterday's away as they come
    peak = 0
    for i in range(20_000):
        lim.check([(f"key:n{i}", Limits(rpd=3))], MIDNIGHT + i)
        peak = max(peak, lim.resident)
    assert lim.resident <= 20_000 + SWEEP_MIN_ENTRIES and peak <= 40_000
    assert not any(s.startswith("key:d") for s in lim.snapshot(MIDNIGHT).rpd)
    lim.sweep(MIDNIGHT + 20_000)
    assert lim.resident == 20_000
