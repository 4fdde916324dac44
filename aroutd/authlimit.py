"""Slowing down repeated failed authentication from one client address (SPEC §12).

After ``MAX_FAILURES`` failures within ``WINDOW_S`` seconds, every request from
that address is answered 429 until the oldest failure leaves the window. The
whole address is held back, not only its failing requests: otherwise the
difference between a 429 and a 200 would still tell a key-guesser which guess
was right. Pure: the caller passes ``now`` (monotonic seconds).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["MAX_FAILURES", "WINDOW_S", "FailedAuthLimiter"]

MAX_FAILURES = 20
WINDOW_S = 60.0
MAX_TRACKED_ADDRESSES = 100_000  # bound memory under a spray from many addresses


class FailedAuthLimiter:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

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
        """Seconds to wait when ``addr`` is held back, else None."""
        q = self._prune(addr, now)
        if q is None or len(q) < self.max_failures:
            return None
        return max(1, math.ceil(q[-self.max_failures] + self.window_s - now))

    def record_failure(self, addr: str, now: float) -> None:
        q = self._prune(addr, now)
        if q is None:
            if len(self._failures) >= MAX_TRACKED_ADDRESSES:
                # forget the address least recently added; dicts keep insertion order
                self._failures.pop(next(iter(self._failures)))
            q = self._failures[addr] = deque(maxlen=self.max_failures)
        q.append(now)
