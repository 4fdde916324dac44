"""The rate limiter on Redis (SPEC §9, §14): exact across every instance sharing a server.

:class:`RedisLimiter` implements :class:`~aroutd.ratelimit.backend.LimiterBackend` by the
rules of the in-memory :class:`~aroutd.ratelimit.limiter.Limiter` (gcra for rpm, daily for
rpd, tokens for tpm; every subject checked first, written only if all admit; Retry-After
the longest wait in whole seconds, at least 1; the X-RateLimit window as
:func:`~aroutd.ratelimit.nearest.nearest` picks it). Each call is one Lua script, atomic
on the server, so N processes on one Redis admit together exactly what one in-memory
limiter would. The script decides and returns each limit's numbers; Python builds the
Decision from them with the pure ``nearest`` and the frozen values.

Microseconds, not ticks: Lua numbers are doubles, exact to 2**53 only, and the in-memory
limiter's 2**32 ticks a second would need 63 bits for a Unix time. Here a time is
``floor(now × 10**6)`` integer microseconds (:func:`to_us`), exact until the year 2255;
calls within one microsecond are at one instant, and the bounds hold on that clock.
rpm's interval is ``ceil(60 × 10**6 / L)`` µs, rounded up as gcra rounds its ticks, so
at most ``L + floor(w × L / 60)`` are admitted in any window ``w``. Both intervals are
exactly ``60 / L`` when L divides 3840 (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 16, 20, 24, 30,
32, 40, ...); otherwise each is above it by less than its unit (L = 25, whole here and not
in ticks, is the one such limit up to 40), which only a time within microseconds of a
boundary can tell apart. An rpm limit above 60 000 000 gets an interval of 1 µs (a
capacity above 60 s). Integer division in Lua is floored on doubles and corrected by
one: exact below 2**53.

Keys, under the store's hash tag (one Cluster slot):

    {aroutd}:rl:rpm:<subject>          string: the TAT (µs)
    {aroutd}:rl:rpd:<day>:<subject>    string: requests admitted on UTC day <day>
    {aroutd}:rl:tpm:<subject>          list, oldest first: "<second> <latest µs> <tokens>"

State expires by TTL (PX), never by a sweep: a TAT when its bucket is full again, a day's
count at the next 00:00 UTC, a token window 60 s after its latest report; each plus
``ttl_margin_s`` (1 s): the TTL runs on the server's clock and the rules on the callers'
``now``, so clocks that disagree by less than the margin never see state vanish early.
A check never writes token windows (a stale bucket is skipped); a report drops them. A
clock stepped back over 00:00 UTC finds that day's count again (memory keeps one day).

Errors: any Redis error is 503 ``state store unavailable`` (ServiceUnavailable). The
client is redis-py's, thread-safe: call from worker threads (backend.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import RedisError
from redis.retry import Retry

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.ratelimit.nearest import nearest
from aroutd.ratelimit.ticks import TICKS_PER_S, retry_after_s
from aroutd.ratelimit.values import (
    Admitted,
    Decision,
    Limits,
    Reason,
    Refused,
    Step,
    Subject,
    Window,
)
from aroutd.store.redis import HEALTH_CHECK_S, PREFIX, TIMEOUT_S, redact_url

__all__ = ["RPD", "RPM", "TPM", "TTL_MARGIN_S", "US_PER_S", "RedisLimiter", "connect", "to_us"]

US_PER_S = 1_000_000
DAY_US = 86_400 * US_PER_S
TTL_MARGIN_S = 1.0
RPM, RPD, TPM = PREFIX + "rl:rpm:", PREFIX + "rl:rpd:", PREFIX + "rl:tpm:"
_UNAVAILABLE = "state store unavailable"

# Shared by both scripts. fdiv: floor(a / b) for integers, exact below 2**53 (the double
# quotient may round across an integer; one step either way corrects it).
_PRELUDE = """
local US, MINUTE_US, DAY_US = 1000000, 60000000, 86400000000
local now, margin_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then return q - 1 end
  if (q + 1) * b <= a then return q + 1 end
  return q
end
local function cdiv(a, b) return -fdiv(-a, b) end
local function int(x) return string.format('%d', x) end
local function ttl(until_us) return int(cdiv(until_us - now, 1000) + margin_ms) end
local function bucket(entry)
  local s, l, t = string.match(entry, '^(%d+) (%d+) (%d+)$')
  return tonumber(s), tonumber(l), tonumber(t)
end
"""

# KEYS: per check, its rpm, rpd (today's) and tpm keys. ARGV: now (µs), margin (ms), then
# per check its rpm, rpd and tpm limits (0: none). Returns five integers per limit, in
# that order: wait (µs, 0: admits), remaining and reset (s) before, remaining and reset
# after (tpm: zeros). Writes only when every wait is 0; PEEK, the same script, never.
_CHECK_BODY = """
local out, writes, refused = {}, {}, false
local function emit(wait, rb, sb, ra, sa)
  for _, x in ipairs({wait, rb, sb, ra, sa}) do out[#out + 1] = x end
  if wait > 0 then refused = true end
end
local function rpm(key, limit)  -- gcra.rpm_step
  local interval = cdiv(MINUTE_US, limit)
  local capacity = limit * interval
  local raw = redis.call('GET', key)
  local start = now
  if raw then start = math.min(math.max(tonumber(raw), now), now + capacity) end
  local after = start + interval
  local remaining = fdiv(capacity - (start - now), interval)
  emit(math.max(0, after - capacity - now), remaining, cdiv(start, US),
       math.max(0, remaining - 1), cdiv(after, US))
  writes[#writes + 1] = {key, after, after}
end
local function rpd(key, limit)  -- daily.rpd_step
  local count = tonumber(redis.call('GET', key) or '0')
  local midnight = (fdiv(now, DAY_US) + 1) * 86400
  local remaining = math.max(0, limit - count)
  local wait = 0
  if count >= limit then wait = midnight * US - now end
  emit(wait, remaining, midnight, math.max(0, remaining - 1), midnight)
  writes[#writes + 1] = {key, count + 1, midnight * US}
end
local function tpm(key, limit)  -- tokens.TokenWindow.wait_ticks
  local live, total = {}, 0
  for _, entry in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local _, latest, tokens = bucket(entry)
    if #live > 0 or latest + MINUTE_US > now then
      live[#live + 1] = {latest, tokens}
      total = total + tokens
    end
  end
  local wait, left = 0, total
  for _, b in ipairs(live) do
    if left < limit then break end
    left = left - b[2]
    if left < limit then wait = b[1] + MINUTE_US - now end
  end
  emit(wait, 0, 0, 0, 0)
end
for c = 0, #KEYS / 3 - 1 do
  local r, d, t = tonumber(ARGV[3 + 3 * c]), tonumber(ARGV[4 + 3 * c]), tonumber(ARGV[5 + 3 * c])
  if r > 0 then rpm(KEYS[1 + 3 * c], r) end
  if d > 0 then rpd(KEYS[2 + 3 * c], d) end
  if t > 0 then tpm(KEYS[3 + 3 * c], t) end
end
if commit and not refused then
  for _, w in ipairs(writes) do redis.call('SET', w[1], int(w[2]), 'PX', ttl(w[3])) end
end
return out
"""
CHECK = _PRELUDE + "local commit = true\n" + _CHECK_BODY
PEEK = _PRELUDE + "local commit = false\n" + _CHECK_BODY

# KEYS: the tpm window. ARGV: now (µs), margin (ms), tokens (> 0). TokenWindow.add: drop
# the buckets that left the window, join the newest bucket when its second is not
# earlier than now's (a clock stepped back), else open a new one.
RECORD_TOKENS = (
    _PRELUDE
    + """
local key, tokens = KEYS[1], tonumber(ARGV[3])
while true do
  local front = redis.call('LINDEX', key, 0)
  if not front then break end
  local _, latest = bucket(front)
  if latest + MINUTE_US > now then break end
  redis.call('LPOP', key)
end
local second, latest = fdiv(now, US), now
local newest = redis.call('LINDEX', key, -1)
local s, l, t
if newest then s, l, t = bucket(newest) end
if newest and second <= s then
  latest = math.max(l, now)
  redis.call('LSET', key, -1, int(s) .. ' ' .. int(latest) .. ' ' .. int(t + tokens))
else
  redis.call('RPUSH', key, int(second) .. ' ' .. int(now) .. ' ' .. int(tokens))
end
redis.call('PEXPIRE', key, ttl(latest + MINUTE_US))
return 1
"""
)


def to_us(now: float) -> int:
    """``now`` (Unix seconds) in whole microseconds, rounded down, exactly."""
    numerator, denominator = now.as_integer_ratio()
    return numerator * US_PER_S // denominator


def connect(url: str, *, password: str | None = None) -> redis.Redis:
    """A client for ``url`` with the state store's settings (2 s timeouts, no retries);
    it connects on first use. A URL redis-py cannot read is a ConfigError."""
    try:
        return redis.Redis.from_url(
            url,
            password=password,
            decode_responses=True,
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_S,
            retry=Retry(NoBackoff(), 0),
        )
    except (RedisError, ValueError) as exc:
        shown = redact_url(url)
        raise ConfigError([f"{shown}: cannot use the state store ({type(exc).__name__})"]) from None


class RedisLimiter:
    """:class:`~aroutd.ratelimit.backend.LimiterBackend` on Redis: one script a call."""

    __slots__ = ("_check", "_client", "_margin_ms", "_owned", "_peek", "_record")

    def __init__(self, client: redis.Redis | str, *, ttl_margin_s: float = TTL_MARGIN_S) -> None:
        self._owned = isinstance(client, str)
        self._client = connect(client) if isinstance(client, str) else client
        if ttl_margin_s < 0:
            raise ValueError(f"ttl_margin_s must be >= 0, not {ttl_margin_s}")
        self._margin_ms = math.ceil(ttl_margin_s * 1000)
        self._check = self._client.register_script(CHECK)
        self._peek = self._client.register_script(PEEK)
        self._record = self._client.register_script(RECORD_TOKENS)

    def check(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Decision:
        checked = self._run_checks(self._check, checks, now)
        if not checked:
            return Admitted(window=None)
        worst = max(checked, key=lambda step: step.wait_ticks)  # the first on a tie
        if worst.wait_ticks > 0:
            return Refused(
                reason=worst.reason,
                subject=worst.subject,
                retry_after_s=retry_after_s(worst.wait_ticks),
                window=nearest(checked, admitted=False),
            )
        return Admitted(window=nearest(checked, admitted=True))

    def peek(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Window | None:
        return nearest(self._run_checks(self._peek, checks, now), admitted=None)

    def _run_checks(
        self, script: Script, checks: Sequence[tuple[Subject, Limits]], now: float
    ) -> list[Step]:
        """Run the check (or peek) script on every limit of ``checks``: their Steps."""
        if len({subject for subject, _ in checks}) != len(checks):
            raise ValueError("a subject is checked twice in one request")
        now_us = to_us(now)
        day = now_us // DAY_US
        keys: list[str] = []
        args: list[int] = [now_us, self._margin_ms]
        steps: list[tuple[Reason, Subject, int]] = []
        for subject, limits in checks:
            keys += [RPM + subject, f"{RPD}{day}:{subject}", TPM + subject]
            args += [limits.rpm or 0, limits.rpd or 0, limits.tpm or 0]
            steps += _steps(subject, limits)
        if not steps:
            return []
        return _checked(steps, [int(n) for n in self._run(script, keys, args)])

    def record_tokens(self, subject: Subject, tokens: int, now: float) -> None:
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens}")
        if tokens:
            self._run(self._record, [TPM + subject], [to_us(now), self._margin_ms, tokens])

    def close(self) -> None:
        """Close the client if this limiter made it from a URL."""
        if self._owned:
            self._client.close()

    def _run(self, script: Script, keys: list[str], args: list[int]) -> Any:
        try:
            return script(keys=keys, args=args)
        except RedisError as exc:
            raise ServiceUnavailable(_UNAVAILABLE) from exc


def _steps(subject: Subject, limits: Limits) -> list[tuple[Reason, Subject, int]]:
    """The limits of one subject the script checks, in its order: rpm, rpd, tpm."""
    steps: list[tuple[Reason, Subject, int]] = []
    if limits.rpm is not None:
        steps.append(("rpm", subject, limits.rpm))
    if limits.rpd is not None:
        steps.append(("rpd", subject, limits.rpd))
    if limits.tpm is not None:
        steps.append(("tpm", subject, limits.tpm))
    return steps


def _checked(steps: list[tuple[Reason, Subject, int]], numbers: list[int]) -> list[Step]:
    """The Steps of the script's five numbers per limit, as ``Limiter`` makes them (the
    remaining after, the fourth number, is the remaining before less one when admitted:
    ``nearest`` derives it)."""
    checked: list[Step] = []
    for i, (reason, subject, limit) in enumerate(steps):
        wait, rem_before, reset_before, _, reset_after = numbers[5 * i : 5 * i + 5]
        shown = reason != "tpm"  # no X-RateLimit headers for tpm
        checked.append(
            Step(
                reason=reason,
                subject=subject,
                wait_ticks=-(-wait * TICKS_PER_S // US_PER_S),  # µs up to ticks
                state_after=0,
                limit=limit if shown else 0,
                remaining=rem_before if shown else 0,
                reset_s=reset_before if shown else 0,
                reset_after_s=reset_after if shown else 0,
            )
        )
    return checked
