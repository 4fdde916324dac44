"""Slowing down repeated failed authentication from one client address (SPEC §12, §14).

After ``MAX_FAILURES`` failures within ``WINDOW_S`` seconds, every request from
that address is answered 429 until the oldest failure leaves the window. The
whole address is held back, not only its failing requests: otherwise the
difference between a 429 and a 200 would still tell a key-guesser which guess
was right. Pure: the caller passes ``now`` (monotonic seconds).

Several instances (SPEC §14: an attacker gains nothing by spreading guesses over
them): a limiter made with ``shared=True`` also keeps the failures recorded since the
last :meth:`FailedAuthLimiter.drain_failures`, which returns them as Unix seconds for
the shell to push (``aroutd/store/redis_authfail.py``, from a worker thread); what the
shared counts hold back comes back through :meth:`FailedAuthLimiter.merge_blocked`
(address -> until, Unix seconds), and :meth:`FailedAuthLimiter.retry_after` answers
the longer of the local and the shared wait. Wall-clock times are moved to the
monotonic clock by ``wall_now - now`` at the call. The request path stays in memory.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping

__all__ = ["MAX_FAILURES", "MAX_TRACKED_ADDRESSES", "WINDOW_S", "FailedAuthLimiter"]

MAX_FAILURES = 20
WINDOW_S = 60.0
MAX_TRACKED_ADDRESSES = 100_000  # bound memory under a spray from many addresses


class FailedAuthLimiter:
    def __init__(
        self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, shared: bool = False
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        # shared: failures not yet drained (monotonic); None when nothing is shared
        self._undrained: dict[str, deque[float]] | None = {} if shared else None
        self._shared: dict[str, float] = {}  # address -> until (monotonic), from others

    def _prune(self, addr: str, now: float) -> deque[float] | None:
        q = self._failures.get(addr)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[addr]
            return None
        return q

    def retry_after(self, addr: str, now: float) -> int | None:
        """Seconds to wait when ``addr`` is held back, here or by the shared counts,
        else None."""
        local = self._local_retry_after(addr, now)
        until = self._shared.get(addr)
        if until is None or until <= now:
            return local
        shared = max(1, math.ceil(until - now))
        return shared if local is None else max(local, shared)

    def _local_retry_after(self, addr: str, now: float) -> int | None:
        q = self._prune(addr, now)
        if q is None or len(q) < self.max_failures:
            return None
        return max(1, math.ceil(q[-self.max_failures] + self.window_s - now))

    def record_failure(self, addr: str, now: float) -> None:
        q = self._prune(addr, now)
        if q is None:
            q = self._failures[addr] = self._new_queue(self._failures)
        q.append(now)
        if self._undrained is not None:
            pending = self._undrained.get(addr)
            if pending is None:
                pending = self._undrained[addr] = self._new_queue(self._undrained)
            pending.append(now)

    def _new_queue(self, queues: dict[str, deque[float]]) -> deque[float]:
        if len(queues) >= MAX_TRACKED_ADDRESSES:
            # forget the address least recently added; dicts keep insertion order
            queues.pop(next(iter(queues)))
        # the newest max_failures are all that can block, here or in a shared count
        return deque(maxlen=self.max_failures)

    def drain_failures(self, now: float, wall_now: float) -> dict[str, list[float]]:
        """The failures recorded since the last drain, per address, in Unix seconds
        (the newest ``max_failures`` of each); empty unless made with ``shared=True``.
        ``now`` and ``wall_now`` are the monotonic and the Unix clock read together."""
        if not self._undrained:
            return {}
        offset = wall_now - now
        drained = {addr: [t + offset for t in q] for addr, q in self._undrained.items()}
        self._undrained = {}
        return drained

    def merge_blocked(self, blocked: Mapping[str, float], now: float, wall_now: float) -> None:
        """Take ``blocked`` (address -> until, Unix seconds: every address the shared
        counts hold back) as the shared part of :meth:`retry_after`, replacing the last
        one. An until at or before ``wall_now`` is dropped; at most
        ``MAX_TRACKED_ADDRESSES`` are kept, the latest untils."""
        live = {addr: until for addr, until in blocked.items() if until > wall_now}
        if len(live) > MAX_TRACKED_ADDRESSES:
            live = dict(heapq.nlargest(MAX_TRACKED_ADDRESSES, live.items(), key=lambda e: e[1]))
        offset = now - wall_now
        self._shared = {addr: until + offset for addr, until in live.items()}
