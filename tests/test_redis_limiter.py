"""aroutd.store.redis_limiter against a real redis-server: the in-memory limiter's rules and
bounds (test_ratelimit_*), the same decisions as the in-memory Limiter, and several
instances on one server admitting together what one would.

Hypothesis examples share the module's server (flushed per example) and use a TTL margin
of an hour, so that real time passing during a test never expires simulated state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.ratelimit import Admitted, Decision, Limiter, LimiterBackend, Limits, Refused, Window
from aroutd.store.redis_limiter import RPD, RPM, TPM, RedisLimiter, connect, to_us

from .redisserver import RedisServer, redis_server, requires_redis
from .test_ratelimit_limiter import _event  # the same request sequences as in memory

pytestmark = requires_redis

BASE = 1_767_225_600.0  # 2026-01-01 00:00 UTC, UTC day 20454
MIDNIGHT = 1_767_312_000
KEY, TENANT = "key:a", "tenant:t"
HOUR_S = 3600.0
PATTERN = "{aroutd}:rl:*"
Clients = tuple[redis.Redis, redis.Redis]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture(scope="module")
def clients(server: RedisServer) -> Iterator[Clients]:
    """Two clients (two connection pools), as two processes would have."""
    a, b = server.client(), server.client()
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    """A client that leaves replies as bytes, for DUMP and RESTORE."""
    c = redis.Redis(host="127.0.0.1", port=server.port)
    yield c
    c.close()


def fresh(clients: Clients, margin_s: float = HOUR_S) -> RedisLimiter:
    clients[0].flushall()
    return RedisLimiter(clients[0], ttl_margin_s=margin_s)


def state(c: redis.Redis) -> dict[str, object]:
    """Every rate-limit key and its value (TTLs left out: they run on real time)."""
    out: dict[str, object] = {}
    for k in sorted(c.scan_iter(match=PATTERN)):
        out[k] = c.lrange(k, 0, -1) if c.type(k) == "list" else c.get(k)
    return out


def ask(lim: LimiterBackend, now: float, rpm: int, subject: str = KEY) -> Decision:
    return lim.check([(subject, Limits(rpm=rpm))], now)


def outcome(decision: Decision) -> str | int:
    return "A" if isinstance(decision, Admitted) else decision.retry_after_s


# -- the interface, the rules, by table --------------------------------------------------


def test_the_redis_limiter_is_a_backend(clients: Clients) -> None:
    backend: LimiterBackend = fresh(clients)
    assert backend.check([], BASE) == Admitted(window=None)
    assert backend.check([(KEY, Limits())], BASE) == Admitted(window=None)
    assert state(clients[0]) == {}


def test_bugs_are_value_errors(clients: Clients) -> None:
    lim = fresh(clients)
    with pytest.raises(ValueError, match="twice"):
        lim.check([(KEY, Limits(rpm=1)), (KEY, Limits(rpd=1))], BASE)
    with pytest.raises(ValueError, match="tokens"):
        lim.record_tokens(KEY, -1, BASE)
    lim.record_tokens(KEY, 0, BASE)
    assert state(clients[0]) == {}


@pytest.mark.parametrize(
    ("rpm", "offsets", "expected"),
    [
        pytest.param(3, [0, 0, 0, 0], ["A", "A", "A", 20], id="burst-then-one-interval"),
        pytest.param(3, [0, 0, 0, 19.5, 20], ["A", "A", "A", 1, "A"], id="half-a-second-early"),
        pytest.param(7, [0] * 8, ["A"] * 7 + [9], id="60/7-rounded-up"),
        pytest.param(1, [0, 59.5, 60], ["A", 1, "A"], id="one-per-minute"),
        pytest.param(120, [0] * 120 + [0.5], ["A"] * 121, id="two-per-second"),
        pytest.param(2, [0, 0, 0, 29, 30, 30], ["A", "A", 30, 1, "A", 30], id="refill-then-empty"),
        pytest.param(10, [0] * 10 + [-3600], ["A"] * 10 + [6], id="a-clock-stepped-back"),
    ],
)
def test_rpm_table(
    clients: Clients, rpm: int, offsets: list[float], expected: list[str | int]
) -> None:
    lim = fresh(clients)
    assert [outcome(ask(lim, BASE + dt, rpm)) for dt in offsets] == expected


@pytest.mark.parametrize(
    ("old", "used", "new", "then"),
    [
        pytest.param(120, 60, 12, ["A"] * 6 + [5], id="lowered-keeps-the-share"),
        pytest.param(10, 10, 20, [3], id="raised-refills-faster"),
        pytest.param(7, 7, 1, [60], id="clamped-to-the-new-burst"),
    ],
)
def test_a_changed_limit_applies_to_the_next_request(
    clients: Clients, old: int, used: int, new: int, then: list[str | int]
) -> None:
    lim = fresh(clients)
    assert all(isinstance(ask(lim, BASE, old), Admitted) for _ in range(used))
    assert [outcome(ask(lim, BASE, new)) for _ in then] == then


@pytest.mark.parametrize(
    ("tpm", "reports", "asks", "expected"),
    [
        pytest.param(100, [(0, 100)], [0, 59.5, 60], [60, 1, "A"], id="at-the-limit"),
        pytest.param(100, [(0, 50), (10, 50)], [20, 59.5, 60], [40, 1, "A"], id="two-buckets"),
        pytest.param(20, [(0.1, 10), (0.9, 10)], [60.5, 60.9], [1, "A"], id="same-second"),
        pytest.param(20, [(0.9, 10), (1.1, 10)], [60.95, 61.1], ["A", "A"], id="next-second"),
        pytest.param(10, [(0, 10)], [-5], [65], id="a-clock-stepped-back"),
        pytest.param(10, [(10, 5), (0, 5)], [69.5, 70], [1, "A"], id="late-report-joins-newest"),
    ],
)
def test_tpm_table(
    clients: Clients,
    tpm: int,
    reports: list[tuple[float, int]],
    asks: list[float],
    expected: list[str | int],
) -> None:
    lim = fresh(clients)
    for dt, tokens in reports:
        lim.record_tokens(KEY, tokens, BASE + dt)
    got = [outcome(lim.check([(KEY, Limits(tpm=tpm))], BASE + dt)) for dt in asks]
    assert got == expected


def test_rpd_counts_the_utc_day(clients: Clients) -> None:
    lim = fresh(clients)
    late = MIDNIGHT - 10.5
    decisions = [lim.check([(KEY, Limits(rpd=2))], late) for _ in range(3)]
    assert decisions[1] == Admitted(window=Window(limit=2, remaining=0, reset=MIDNIGHT))
    assert decisions[2] == Refused(
        reason="rpd",
        subject=KEY,
        retry_after_s=11,
        window=Window(limit=2, remaining=0, reset=MIDNIGHT),
    )
    assert isinstance(lim.check([(KEY, Limits(rpd=2))], MIDNIGHT), Admitted)


@pytest.mark.parametrize("rpm", [1, 2, 7, 60, 1000])
def test_a_burst_of_twice_the_limit_admits_exactly_the_limit(clients: Clients, rpm: int) -> None:
    lim = fresh(clients)
    decisions = [ask(lim, BASE + 0.25, rpm) for _ in range(2 * rpm)]
    assert all(isinstance(d, Admitted) for d in decisions[:rpm])
    assert all(isinstance(d, Refused) and d.reason == "rpm" for d in decisions[rpm:])


def test_the_tenant_refuses_and_the_key_keeps_its_figures(clients: Clients) -> None:
    lim = fresh(clients)
    checks = [(KEY, Limits(rpm=5, rpd=100)), (TENANT, Limits(rpm=2))]
    assert all(isinstance(lim.check(checks, BASE), Admitted) for _ in range(2))
    before = state(clients[0])
    assert lim.check(checks, BASE) == Refused(
        reason="rpm",
        subject=TENANT,
        retry_after_s=30,
        window=Window(limit=2, remaining=0, reset=int(BASE) + 60),
    )
    assert state(clients[0]) == before
    assert before[f"{RPD}20454:{KEY}"] == "2"
    assert before[RPM + KEY] == str(int(BASE + 24) * 10**6)  # 2 of 5 used: 24 s to refill
    other = [(KEY, Limits(rpm=5, rpd=100)), ("tenant:u", Limits(rpm=100))]
    assert [isinstance(lim.check(other, BASE), Admitted) for _ in range(4)] == [True] * 3 + [False]


def test_retry_after_is_the_longest_wait(clients: Clients) -> None:
    lim = fresh(clients)
    ask(lim, BASE, 10)
    lim.record_tokens(TENANT, 500, BASE + 20)
    for _ in range(9):
        ask(lim, BASE + 20, 10)
    refused = lim.check([(KEY, Limits(rpm=10)), (TENANT, Limits(tpm=500))], BASE + 20)
    assert isinstance(refused, Refused)
    assert (refused.reason, refused.subject, refused.retry_after_s) == ("tpm", TENANT, 60)
    assert isinstance(ask(lim, BASE + 26, 10), Admitted)


# -- several instances on one server ---------------------------------------------------


@pytest.mark.parametrize("rpm", [1, 7, 100])
def test_two_instances_interleaving_admit_exactly_the_limit(clients: Clients, rpm: int) -> None:
    a, b = fresh(clients), RedisLimiter(clients[1], ttl_margin_s=HOUR_S)
    decisions = [ask((a, b)[i % 2], BASE, rpm) for i in range(2 * rpm)]
    assert sum(isinstance(d, Admitted) for d in decisions) == rpm
    assert all(isinstance(d, Admitted) for d in decisions[:rpm])


def test_two_instances_in_two_threads_admit_exactly_the_limit(clients: Clients) -> None:
    rpm = 500
    limiters = [fresh(clients), RedisLimiter(clients[1], ttl_margin_s=HOUR_S)]

    def burst(lim: RedisLimiter) -> int:
        return sum(isinstance(ask(lim, BASE, rpm), Admitted) for _ in range(rpm))

    with ThreadPoolExecutor(2) as pool:
        admitted = list(pool.map(burst, limiters))
    assert sum(admitted) == rpm, admitted


# -- keys, TTLs, errors ----------------------------------------------------------------


def test_the_keys_and_their_ttls(clients: Clients) -> None:
    c = clients[0]
    lim = fresh(clients, margin_s=1.0)
    lim.check([(KEY, Limits(rpm=10, rpd=5, tpm=100))], BASE)
    lim.record_tokens(KEY, 7, BASE + 0.5)
    lim.record_tokens(KEY, 3, BASE + 0.75)
    assert state(c) == {
        RPD + f"20454:{KEY}": "1",
        RPM + KEY: str(int(BASE + 6) * 10**6),
        TPM + KEY: [f"{int(BASE)} {int(BASE * 10**6) + 750_000} 10"],
    }
    # TAT 6 s ahead, midnight 86 400 s ahead, the latest report + 60 s: each + 1 s
    expected = {RPM + KEY: 7_000, RPD + f"20454:{KEY}": 86_401_000, TPM + KEY: 61_000}
    for key, ms in expected.items():
        assert ms - 500 < c.pttl(key) <= ms, key
    assert all(key.startswith("{aroutd}:rl:") for key in c.scan_iter())


def test_state_expires_by_ttl(clients: Clients) -> None:
    c = clients[0]
    lim = fresh(clients, margin_s=0.2)
    ask(lim, BASE, 60_000_000)  # a 1 µs interval: the bucket is full again at once
    assert 0 < c.pttl(RPM + KEY) <= 201  # 1 ms (rounded up) + the margin
    assert _gone(c, RPM + KEY)


def _gone(c: redis.Redis, key: str) -> bool:
    for _ in range(200):
        if not c.exists(key):
            return True
        time.sleep(0.01)  # the server's clock expires it: nothing to wait on but polling
    return False


def test_redis_errors_are_503(tmp_path: Path) -> None:
    with redis_server(tmp_path / "own") as own:
        lim = RedisLimiter(connect(own.url))
        assert isinstance(ask(lim, BASE, 1), Admitted)
        own.kill()
        with pytest.raises(ServiceUnavailable) as caught:
            ask(lim, BASE, 1)
        assert caught.value.status == 503
        with pytest.raises(ServiceUnavailable):
            lim.record_tokens(KEY, 1, BASE)


def test_a_url_redis_cannot_read_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"http://u:\*\*\*@h"):
        RedisLimiter("http://u:secret@h/0")


# -- hypothesis: bounds -----------------------------------------------------------------

_offsets = st.lists(st.floats(0, 240, allow_nan=False), min_size=1, max_size=100)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), _offsets)
def test_tight_gcra_bound_in_every_window(clients: Clients, rpm: int, offsets: list[float]) -> None:
    """In any closed window of length w on the limiter's microsecond clock:
    admitted <= L + floor(w × L / 60)."""
    lim = fresh(clients)
    times = sorted(BASE + dt for dt in offsets)
    admitted = [Fraction(to_us(t), 10**6) for t in times if isinstance(ask(lim, t, rpm), Admitted)]
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            w = admitted[j] - first
            assert j - i + 1 <= rpm + math.floor(w * rpm / 60), (rpm, first, admitted[j])


@settings(max_examples=50, deadline=None)
@given(st.lists(_event, max_size=40))
def test_a_refused_request_changes_nothing_and_retry_after_is_never_early(
    clients: Clients,
    raw: redis.Redis,
    events: list[tuple[float, list[tuple[str, Limits]] | tuple[str, int]]],
) -> None:
    lim = fresh(clients)
    t = BASE + 86_000  # near a midnight, so days roll over too
    for dt, event in events:
        t += dt
        if isinstance(event, tuple):
            lim.record_tokens(event[0], event[1], t)
            continue
        before = state(clients[0])
        decision = lim.check(event, t)
        if isinstance(decision, Admitted):
            continue
        assert state(clients[0]) == before
        r = decision.retry_after_s
        assert type(r) is int and r >= 1
        if r > 1:
            assert isinstance(lim.check(event, t + r - 1), Refused)
        saved = [(k, raw.dump(k), raw.pttl(k)) for k in raw.scan_iter(match=PATTERN)]
        assert isinstance(lim.check(event, t + r), Admitted)
        raw.flushall()  # back to the state at t
        for k, dumped, ttl in saved:
            assert dumped is not None
            raw.restore(k, max(ttl, 0), dumped)


# -- hypothesis: the same decisions as the in-memory limiter ----------------------------
#
# Times are on a 1/16 s grid and move forward (a clock stepping back meets sweep timing
# in memory and TTLs here: not comparable). Then every comparison either limiter makes is
# "g >= n × T" for a grid value g and a count n of intervals: the same answer for both
# when both intervals T are exact (60 / L) or both rounded up, since n rounded intervals
# exceed n × 60 / L by less than n µs (n < 200 here) while the next grid value above it
# is at least 1/(16 L) s away. L = 25 is the one limit up to 40 whose interval is whole
# in microseconds and not in ticks (2.4 s): left out, so no tolerance is needed (with it,
# 5 requests at once disagree: test_the_agreeing_limits_leave_out_only_25).

_BOTH_EXACT = [n for n in range(1, 41) if 60 * 2**32 % n == 0 == 60 * 10**6 % n]
_AGREEING = [n for n in range(1, 41) if (60 * 2**32 % n == 0) == (60 * 10**6 % n == 0)]
_SUBJECTS = ["key:a", "key:b", "tenant:t", "wallet:w"]


def _limits_of(rpms: list[int]) -> st.SearchStrategy[Limits]:
    return st.builds(
        Limits,
        rpm=st.one_of(st.none(), st.sampled_from(rpms)),
        rpd=st.one_of(st.none(), st.integers(1, 30)),
        tpm=st.one_of(st.none(), st.integers(1, 400)),
    )


Checks = list[tuple[str, Limits]]
Report = tuple[str, int]
OracleEvent = tuple[float, int, Checks | Report]  # (dt, which instance, what)

_grid_dt = st.one_of(st.integers(0, 16 * 20), st.integers(0, 16 * 120)).map(lambda n: n / 16)
_report = st.tuples(st.sampled_from(_SUBJECTS), st.integers(0, 300))


def _oracle_events(checks: st.SearchStrategy[Checks]) -> st.SearchStrategy[list[OracleEvent]]:
    event = st.tuples(_grid_dt, st.integers(0, 1), st.one_of(checks, _report))
    return st.lists(event, max_size=60)


def _same_as_in_memory(clients: Clients, events: list[OracleEvent]) -> None:
    """Each event goes to one of two RedisLimiters on one server, and to one Limiter."""
    shared = (fresh(clients), RedisLimiter(clients[1], ttl_margin_s=HOUR_S))
    memory = Limiter()
    t = BASE + 86_000  # crosses 00:00 UTC after 400 s
    for i, (dt, instance, event) in enumerate(events):
        t += dt
        if isinstance(event, tuple):
            memory.record_tokens(event[0], event[1], t)
            shared[instance].record_tokens(event[0], event[1], t)
        else:
            peeked = memory.peek(event, t)
            assert shared[instance].peek(event, t) == peeked, ("peek", i, t - BASE, event)
            expected = memory.check(event, t)
            assert shared[instance].check(event, t) == expected, (i, t - BASE, event)


_own_limits = st.fixed_dictionaries({s: _limits_of(_AGREEING) for s in _SUBJECTS})
_which = st.lists(st.sampled_from(_SUBJECTS), max_size=3, unique=True)


@settings(max_examples=50, deadline=None)
@given(_own_limits, _oracle_events(_which.map(lambda w: [(s, Limits()) for s in w])))
def test_same_decisions_as_in_memory_with_each_subjects_own_limits(
    clients: Clients, limits: dict[str, Limits], events: list[OracleEvent]
) -> None:
    """Each subject keeps its limits; rpm any L up to 40 but 25, rounded intervals too."""
    resolved: list[OracleEvent] = [
        (dt, n, e if isinstance(e, tuple) else [(s, limits[s]) for s, _ in e])
        for dt, n, e in events
    ]
    _same_as_in_memory(clients, resolved)


_changing = st.lists(
    st.tuples(st.sampled_from(_SUBJECTS), _limits_of(_BOTH_EXACT)),
    max_size=3,
    unique_by=lambda c: c[0],
)


@settings(max_examples=50, deadline=None)
@given(_oracle_events(_changing))
def test_same_decisions_as_in_memory_with_limits_changing(
    clients: Clients, events: list[OracleEvent]
) -> None:
    """A limit may change between any two requests (rpm's intervals exact: 60 / L)."""
    _same_as_in_memory(clients, events)


def test_the_agreeing_limits_leave_out_only_25(clients: Clients) -> None:
    assert sorted(set(range(1, 41)) - set(_AGREEING)) == [25]
    assert 7 in _AGREEING and 7 not in _BOTH_EXACT
    # 5 intervals of 2.4 s end 12 s on exactly here and a few ticks later in memory: the
    # 5th request's X-RateLimit-Reset differs by a second
    events: list[OracleEvent] = [(0.0, 0, [(KEY, Limits(rpm=25))])] * 5
    with pytest.raises(AssertionError):
        _same_as_in_memory(clients, events)
