"""Failed authentication counted across instances (SPEC §12, §14): aroutd.authlimit's
drain and merge (pure, by table), and aroutd.store.redis_authfail on a real redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aroutd.authlimit import MAX_FAILURES, WINDOW_S, FailedAuthLimiter
from aroutd.errors import ServiceUnavailable
from aroutd.store.redis_authfail import ADDR, BLOCKED, RedisAuthFailures

from .redisserver import RedisServer, redis_server, requires_redis

WALL = 1_767_225_600.25  # Unix seconds
MONO = 5_000.0  # the monotonic clock read at the same instant
ADDR_A, ADDR_B = "203.0.113.7", "2001:db8::1"


# -- authlimit, pure -----------------------------------------------------------------------


def _limiter(failures: list[float], addr: str = ADDR_A, **kwargs: bool) -> FailedAuthLimiter:
    lim = FailedAuthLimiter(**kwargs)
    for t in failures:
        lim.record_failure(addr, MONO + t)
    return lim


@pytest.mark.parametrize(
    ("failures", "at", "expected"),
    [
        pytest.param([0.0] * 19, 0.0, None, id="19-is-not-enough"),
        pytest.param([0.0] * 20, 0.0, 60, id="20-at-once"),
        pytest.param([float(i) for i in range(20)], 19.5, 41, id="until-the-oldest-leaves"),
        pytest.param([float(i) for i in range(25)], 24.0, 41, id="the-20th-newest"),
        pytest.param([0.0] * 20, 60.0, None, id="left-the-window"),
    ],
)
def test_local_retry_after_is_unchanged(
    failures: list[float], at: float, expected: int | None
) -> None:
    for shared in (False, True):
        assert _limiter(failures, shared=shared).retry_after(ADDR_A, MONO + at) == expected


def test_nothing_is_drained_unless_shared() -> None:
    lim = _limiter([0.0, 1.0])
    assert lim.drain_failures(MONO + 2, WALL + 2) == {}


def test_drained_failures_are_in_unix_seconds_and_drained_once() -> None:
    lim = _limiter([-0.5, -0.25], shared=True)
    lim.record_failure(ADDR_B, MONO)
    assert lim.drain_failures(MONO, WALL) == {ADDR_A: [WALL - 0.5, WALL - 0.25], ADDR_B: [WALL]}
    assert lim.drain_failures(MONO, WALL) == {}
    lim.record_failure(ADDR_A, MONO + 1)
    assert lim.drain_failures(MONO + 1, WALL + 1) == {ADDR_A: [WALL + 1]}
    assert lim.retry_after(ADDR_A, MONO + 1) is None  # three failures: still counted here


def test_a_drain_keeps_the_newest_max_failures_of_an_address() -> None:
    lim = _limiter([float(i) for i in range(30)], shared=True)
    assert lim.drain_failures(MONO + 30, WALL + 30) == {ADDR_A: [WALL + i for i in range(10, 30)]}


@pytest.mark.parametrize(
    ("local", "until", "at", "expected"),
    [
        pytest.param(0, 30.0, 0.0, 30, id="blocked-elsewhere"),
        pytest.param(0, 30.0, 29.5, 1, id="rounded-up-at-least-1"),
        pytest.param(0, 30.0, 30.0, None, id="over"),
        pytest.param(20, 30.0, 0.0, 60, id="local-is-longer"),
        pytest.param(20, 75.0, 0.0, 75, id="shared-is-longer"),
        pytest.param(19, 10.0, 0.0, 10, id="local-not-enough"),
    ],
)
def test_retry_after_is_the_longer_of_local_and_shared(
    local: int, until: float, at: float, expected: int | None
) -> None:
    lim = _limiter([0.0] * local, shared=True)
    lim.merge_blocked({ADDR_A: WALL + until}, MONO, WALL)
    assert lim.retry_after(ADDR_A, MONO + at) == expected
    assert lim.retry_after(ADDR_B, MONO + at) is None


def test_a_merge_replaces_the_last_and_drops_what_is_over() -> None:
    lim = FailedAuthLimiter(shared=True)
    lim.merge_blocked({ADDR_A: WALL + 30, ADDR_B: WALL}, MONO, WALL)
    assert lim.retry_after(ADDR_B, MONO - 1) is None  # until at wall_now: dropped
    # the clocks read 10 s later, the wall clock stepped 100 s ahead meanwhile
    lim.merge_blocked({ADDR_B: WALL + 140}, MONO + 10, WALL + 110)
    assert lim.retry_after(ADDR_A, MONO + 10) is None
    assert lim.retry_after(ADDR_B, MONO + 10) == 30


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture
def two(server: RedisServer) -> Iterator[tuple[RedisAuthFailures, RedisAuthFailures, redis.Redis]]:
    """Two instances, each on its own client, and a client to look with."""
    look = server.client()
    look.flushall()
    a, b = server.client(), server.client()
    yield RedisAuthFailures(a), RedisAuthFailures(b), look
    for c in (a, b, look):
        c.close()


Two = tuple[RedisAuthFailures, RedisAuthFailures, redis.Redis]


@requires_redis
def test_failures_spread_over_two_instances_block_the_address_for_both(two: Two) -> None:
    a, b, _ = two
    times = [WALL + i for i in range(20)]
    a.push({ADDR_A: times[0::2], ADDR_B: [WALL]}, WALL + 19)
    assert a.blocked(WALL + 19) == {} == b.blocked(WALL + 19)
    b.push({ADDR_A: times[1::2]}, WALL + 19)
    assert a.blocked(WALL + 19) == {ADDR_A: WALL + 60} == b.blocked(WALL + 19.5)


@requires_redis
def test_the_daemons_way_drain_push_read_merge(two: Two) -> None:
    a, b, _ = two
    locals_ = [FailedAuthLimiter(shared=True), FailedAuthLimiter(shared=True)]
    for i in range(20):  # alternate instances: 10 failures each, none blocked locally
        locals_[i % 2].record_failure(ADDR_A, MONO + i)
    mono, wall = MONO + 19.5, WALL + 19.5
    for lim, store in zip(locals_, (a, b), strict=True):
        assert lim.retry_after(ADDR_A, mono) is None
        store.push(lim.drain_failures(mono, wall), wall)
    for lim, store in zip(locals_, (a, b), strict=True):
        lim.merge_blocked(store.blocked(wall), mono, wall)
        assert lim.retry_after(ADDR_A, mono) == 41  # the first failure + 60 s


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        pytest.param([0.125 * i for i in range(20)], 60.0, id="exactly-20"),
        pytest.param([0.125 * i for i in range(27)], 60.0 + 0.125 * 7, id="the-20th-newest"),
        pytest.param([1.0] * 20, 61.0, id="equal-times-all-count"),
        pytest.param([0.0] * 19, None, id="19"),
    ],
)
@requires_redis
def test_until_is_the_20th_newest_failure_plus_the_window(
    two: Two, offsets: list[float], expected: float | None
) -> None:
    a, b, _ = two
    half = len(offsets) // 2
    a.push({ADDR_A: [WALL + t for t in offsets[:half]]}, WALL + 5)
    b.push({ADDR_A: [WALL + t for t in offsets[half:]]}, WALL + 5)
    blocked = a.blocked(WALL + 5)
    assert blocked == ({} if expected is None else {ADDR_A: WALL + expected})


@requires_redis
def test_failures_that_left_the_window_do_not_count(two: Two) -> None:
    a, b, look = two
    a.push({ADDR_A: [WALL] * 10}, WALL)
    b.push({ADDR_A: [WALL + 60] * 10}, WALL + 60)  # WALL is at now - 60: out
    assert b.blocked(WALL + 60) == {}
    assert look.zcard(ADDR + ADDR_A) == 10


@requires_redis
def test_entries_expire(two: Two) -> None:
    a, _, look = two
    a.push({ADDR_A: [WALL] * MAX_FAILURES}, WALL)
    assert a.blocked(WALL + 59.9) == {ADDR_A: WALL + 60}
    ttl_ms = WINDOW_S * 1000
    assert ttl_ms - 500 < look.pttl(ADDR + ADDR_A) <= ttl_ms
    assert ttl_ms + 500 < look.pttl(BLOCKED) <= ttl_ms + 1000  # until - now + 1 s
    assert a.blocked(WALL + 60) == {}
    assert look.zcard(BLOCKED) == 0  # stale entries removed by the read


@requires_redis
def test_keys_expire_on_the_servers_clock(server: RedisServer) -> None:
    look = server.client()
    look.flushall()
    short = RedisAuthFailures(look, max_failures=2, window_s=0.1)
    now = time.time()
    short.push({ADDR_A: [now, now]}, now)
    assert short.blocked(now) == {ADDR_A: now + 0.1}
    for _ in range(300):  # the server expires them: nothing to wait on but polling
        if not look.exists(ADDR + ADDR_A, BLOCKED):
            break
        time.sleep(0.01)
    assert look.exists(ADDR + ADDR_A, BLOCKED) == 0
    look.close()


@requires_redis
def test_redis_errors_are_503(tmp_path: Path) -> None:
    with redis_server(tmp_path / "own") as own:
        failures = RedisAuthFailures(own.url)
        failures.push({ADDR_A: [WALL]}, WALL)
        own.kill()
        with pytest.raises(ServiceUnavailable):
            failures.push({ADDR_A: [WALL]}, WALL)
        with pytest.raises(ServiceUnavailable):
            failures.blocked(WALL)
        failures.push({}, WALL)  # nothing to push: no round trip
        failures.close()
