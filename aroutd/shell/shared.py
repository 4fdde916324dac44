"""What several instances on Redis count together (SPEC §9, §12, §14), wired in.

With ``[state] backend = "redis"``:

- rate limits: the runtime's limiter is :class:`~aroutd.store.redis_limiter.RedisLimiter`
  (one atomic script per check, in a worker thread, see :mod:`aroutd.shell.ratelimits`),
  and reported tokens are sent every 50 ms (:func:`~aroutd.shell.ratelimits.flush_tokens`);
- failed authentication: the slow-down stays in memory (it is read on every request),
  and every ``SHARE_INTERVAL_S`` the failures recorded here since the last exchange go
  to Redis and the addresses the shared counts hold back come back
  (:func:`share_auth_failures`), so guesses spread over instances add up. A Redis that
  does not answer leaves each instance counting on its own until it does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from aroutd.authlimit import FailedAuthLimiter
from aroutd.errors import ServiceUnavailable
from aroutd.shell.ratelimits import flush_tokens
from aroutd.shell.runtime import Runtime

if TYPE_CHECKING:
    from aroutd.store.redis_authfail import RedisAuthFailures

__all__ = ["SHARE_INTERVAL_S", "share_auth_failures", "start_shared", "use_redis_counters"]

SHARE_INTERVAL_S = 0.25


def use_redis_counters(rt: Runtime) -> None:
    """The runtime's limiter and failed-auth counters, shared through ``redis_url``."""
    from aroutd.store.redis_authfail import RedisAuthFailures
    from aroutd.store.redis_limiter import RedisLimiter

    url = rt.config.state.redis_url
    rt.limiter, rt.limiter_blocks = RedisLimiter(url), True
    rt.auth_failures = FailedAuthLimiter(shared=True)
    rt.auth_share = RedisAuthFailures(url)


def start_shared(rt: Runtime, nursery: trio.Nursery) -> None:
    """The background tasks of the shared counters, when there are any."""
    if rt.limiter_blocks:
        nursery.start_soon(flush_tokens, rt)
    if rt.auth_share is not None:
        nursery.start_soon(share_auth_failures, rt)


def _exchange(
    share: RedisAuthFailures, failures: dict[str, list[float]], wall: float
) -> dict[str, float]:
    """Push our failures, read who is held back (one worker thread, two scripts)."""
    if failures:
        share.push(failures, wall)
    return share.blocked(wall)


async def share_auth_failures(rt: Runtime) -> None:
    share = rt.auth_share
    assert share is not None
    while True:
        await trio.sleep(SHARE_INTERVAL_S)
        mono, wall = time.monotonic(), time.time()
        failures = rt.auth_failures.drain_failures(mono, wall)
        try:
            blocked = await trio.to_thread.run_sync(_exchange, share, failures, wall)
        except ServiceUnavailable:
            continue  # these failures still hold back here; the others' come back later
        rt.auth_failures.merge_blocked(blocked, time.monotonic(), time.time())
