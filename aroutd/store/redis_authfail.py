"""Failed-authentication counts shared through Redis (SPEC §12, §14): an attacker gains
nothing by spreading guesses over instances.

Each instance keeps answering from its in-memory :class:`~aroutd.authlimit.FailedAuthLimiter`
(a request never waits on Redis); a background task moves the counts both ways about
every 0.25 s, from a worker thread: :meth:`RedisAuthFailures.push` adds the failures
drained since the last push, and :meth:`RedisAuthFailures.blocked` reads back every
address held back by the failures of all instances together, which the limiter merges.

Rules (the same as authlimit's, over the union of every instance's failures):

- An address is held back once ``max_failures`` (20) of its failures fall within
  ``window_s`` (60 s), until the ``max_failures``-th newest of them leaves the window:
  ``until = that failure + window_s``. A failure at or before ``now - window_s`` no
  longer counts. Times are Unix seconds (instances share no monotonic clock).
- One script a push, atomic: every address's failures appended and trimmed, its count
  taken, its ``until`` recorded (never lowered: ZADD GT).

Keys, under the store's hash tag:

    {aroutd}:authfail:addr:<address>   zset: one member per failure, score = its time;
                                       PX window_s from the last push that touched it
    {aroutd}:authfail:blocked          zset: address -> until (Unix s); an entry at or
                                       before ``now`` is dropped by a push or a read; PX
                                       until its latest until + 1 s

A member is ``<instance token>:<push number>:<address index>:<failure index>``, so equal
times from one or several instances are all counted. Any Redis error is 503
(ServiceUnavailable). Thread-safe (redis-py's client).
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import RedisError

from aroutd.authlimit import MAX_FAILURES, WINDOW_S
from aroutd.errors import ServiceUnavailable
from aroutd.store.redis import PREFIX
from aroutd.store.redis_limiter import connect

__all__ = ["ADDR", "BLOCKED", "BLOCKED_MARGIN_MS", "RedisAuthFailures"]

ADDR = PREFIX + "authfail:addr:"
BLOCKED = PREFIX + "authfail:blocked"
BLOCKED_MARGIN_MS = 1000
_UNAVAILABLE = "state store unavailable"

# KEYS: blocked, then one zset per address. ARGV: now, now - window_s, window_s,
# window (ms), max_failures, member tag, margin (ms), then per address: the address,
# n, n failure times. Scores are passed as the strings Python wrote (exact doubles).
PUSH = """
local blocked, now, cutoff = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local window, window_ms, most = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local tag, margin_ms = ARGV[6], tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', blocked, '-inf', ARGV[1])
local i = 8
for k = 2, #KEYS do
  local key, addr, n = KEYS[k], ARGV[i], tonumber(ARGV[i + 1])
  for j = 1, n do
    redis.call('ZADD', key, ARGV[i + 1 + j], tag .. ':' .. k .. ':' .. j)
  end
  i = i + 2 + n
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  if redis.call('ZCARD', key) >= most then
    local nth = redis.call('ZREVRANGE', key, most - 1, most - 1, 'WITHSCORES')
    local until_s = tonumber(nth[2]) + window
    if until_s > now then redis.call('ZADD', blocked, 'GT', until_s, addr) end
  end
  redis.call('PEXPIRE', key, window_ms)
end
local last = redis.call('ZRANGE', blocked, -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIRE', blocked, math.ceil((tonumber(last[2]) - now) * 1000) + margin_ms)
end
return 1
"""

# KEYS: blocked. ARGV: now. The entries still holding an address back, stale ones dropped.
BLOCKED_NOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"""


class RedisAuthFailures:
    """The failures of every instance, counted together; see the module docstring."""

    __slots__ = (
        "_blocked",
        "_client",
        "_owned",
        "_push",
        "_pushes",
        "_token",
        "max_failures",
        "window_s",
    )

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
    ) -> None:
        self._owned = isinstance(client, str)
        self._client = connect(client) if isinstance(client, str) else client
        self.max_failures = max_failures
        self.window_s = window_s
        self._push = self._client.register_script(PUSH)
        self._blocked = self._client.register_script(BLOCKED_NOW)
        self._token = secrets.token_hex(8)  # this instance's members never collide
        self._pushes = itertools.count()

    def push(self, failures: Mapping[str, Sequence[float]], now: float) -> None:
        """Add ``failures`` (address -> failure times, Unix seconds, since the last push)
        and record every address they bring to ``max_failures`` in the window."""
        batch = {addr: times for addr, times in failures.items() if times}
        if not batch:
            return
        keys = [BLOCKED] + [ADDR + addr for addr in batch]
        args: list[Any] = [now, now - self.window_s, self.window_s]
        args += [math.ceil(self.window_s * 1000), self.max_failures]
        args += [f"{self._token}:{next(self._pushes)}", BLOCKED_MARGIN_MS]
        for addr, times in batch.items():
            args += [addr, len(times), *(float(t) for t in times)]
        self._run(lambda: self._push(keys=keys, args=args))

    def blocked(self, now: float) -> dict[str, float]:
        """Every address held back at ``now`` -> until (Unix seconds); stale entries go."""
        flat = self._run(lambda: self._blocked(keys=[BLOCKED], args=[now]))
        return {_text(a): float(_text(u)) for a, u in zip(flat[::2], flat[1::2], strict=True)}

    def close(self) -> None:
        """Close the client if this object made it from a URL."""
        if self._owned:
            self._client.close()

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RedisError as exc:
            raise ServiceUnavailable(_UNAVAILABLE) from exc


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
