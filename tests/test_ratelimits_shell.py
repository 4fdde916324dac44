"""Rate limits on the request path (aroutd.shell.ratelimits), in trio with the autojump
clock: the runtime's wall clock follows trio's, so a minute of Retry-After takes none."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from aroutd.accesslog import AccessRecord
from aroutd.errors import TooManyRequests
from aroutd.keytable.table import KeyTable
from aroutd.principal import Principal
from aroutd.ratelimit import Limits
from aroutd.shell.ratelimits import admit, record_tokens, standing
from aroutd.shell.runtime import Runtime
from aroutd.store.sqlite import SqliteStore

from .support import Keys, make_config

EPOCH = 1_796_000_000.0  # a Unix time; trio's clock is added to it


def _runtime(tmp: Path) -> Runtime:
    cfg = make_config(tmp, 9, Keys())
    rt = Runtime.build(
        cfg, KeyTable(tenants={}, by_digest={}), SqliteStore.open(tmp / "s.db"), None
    )
    rt.wall_clock = lambda: EPOCH + trio.current_time()
    return rt


def _principal(*limits: tuple[str, Limits]) -> Principal:
    return Principal(kind="api", tenant="acme", key_hash="ab" * 32, rate_limits=limits)


def _headers(err: TooManyRequests) -> dict[str, str]:
    return dict(err.headers)


async def test_a_burst_of_twice_the_limit(tmp_path: Path, autojump_clock: object) -> None:
    rt = _runtime(tmp_path)
    p = _principal(("key:k", Limits(rpm=10)))
    admitted, refused = 0, []
    for _ in range(20):
        try:
            window = dict(await admit(rt, p, AccessRecord(time=0.0)))
            admitted += 1
            assert window["X-RateLimit-Limit"] == "10"
            assert window["X-RateLimit-Remaining"] == str(10 - admitted)
        except TooManyRequests as exc:
            refused.append(exc)
    assert admitted == 10 and len(refused) == 10
    err = refused[0]
    assert (err.status, err.message, err.type) == (429, "rate limit exceeded", "rate_limit_error")
    headers = _headers(err)
    assert headers["Retry-After"] == "6"  # one request's worth: 60 s / 10
    assert headers["X-RateLimit-Remaining"] == "0"
    assert rt.metrics.rate_limited[("rpm", "api")] == 10
    await trio.sleep(int(headers["Retry-After"]) - 0.01)  # just before: still refused
    with pytest.raises(TooManyRequests):
        await admit(rt, p, AccessRecord(time=0.0))
    await trio.sleep(0.01)  # Retry-After is honoured: now it is admitted
    await admit(rt, p, AccessRecord(time=0.0))


async def test_the_tenant_refuses_and_the_key_keeps_its_count(
    tmp_path: Path, autojump_clock: object
) -> None:
    rt = _runtime(tmp_path)
    tenant = ("tenant:acme", Limits(rpm=2))
    a = _principal(("key:a", Limits(rpm=5)), tenant)
    b = _principal(("key:b", Limits(rpm=5)), tenant)
    await admit(rt, a, AccessRecord(time=0.0))
    await admit(rt, b, AccessRecord(time=0.0))
    rec = AccessRecord(time=0.0)
    with pytest.raises(TooManyRequests) as info:
        await admit(rt, a, rec)
    assert rec.rate_limit == "rpm"
    # the nearest window is the tenant's (none left), not the key's (4 left)
    assert _headers(info.value)["X-RateLimit-Limit"] == "2"
    await trio.sleep(60)
    window = dict(await admit(rt, a, AccessRecord(time=0.0)))
    assert window["X-RateLimit-Limit"] == "2" and window["X-RateLimit-Remaining"] == "1"


async def test_tpm_counts_reported_tokens(tmp_path: Path, autojump_clock: object) -> None:
    rt = _runtime(tmp_path)
    p = _principal(("wallet:w", Limits(tpm=100)))
    assert await admit(rt, p, AccessRecord(time=0.0)) == []  # tpm alone: no X-RateLimit-*
    record_tokens(rt, p, 100)  # the response's usage, known at its end
    with pytest.raises(TooManyRequests) as info:
        await admit(rt, p, AccessRecord(time=0.0))
    wait = int(_headers(info.value)["Retry-After"])
    assert 60 <= wait <= 61
    await trio.sleep(wait)
    await admit(rt, p, AccessRecord(time=0.0))


async def test_no_limits_no_headers(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    assert await admit(rt, _principal(), AccessRecord(time=0.0)) == []


async def test_standing_shows_the_window_and_counts_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    rt = _runtime(tmp_path)
    p = _principal(("key:k", Limits(rpm=10, rpd=100)))
    assert dict(await standing(rt, p))["X-RateLimit-Remaining"] == "10"
    for _ in range(3):
        await standing(rt, p)
    assert dict(await admit(rt, p, AccessRecord(time=0.0)))["X-RateLimit-Remaining"] == "9"
    shown = dict(await standing(rt, p))
    assert (shown["X-RateLimit-Limit"], shown["X-RateLimit-Remaining"]) == ("10", "9")
    assert await standing(rt, _principal(("key:k", Limits(tpm=5)))) == []  # tpm: no headers
    assert await standing(rt, _principal()) == []
