"""SPEC §9 ``tpm_limit``: input + output tokens reported in the last 60 s, a sliding window.

Tokens are added when an answer's usage becomes known, not at admission, so a check
only reads: a request is refused while the window holds ``>= tpm_limit`` tokens, and
may come back when enough of them have left it.

The window keeps one bucket per second in which tokens were reported: its tokens
and its latest report. A bucket leaves 60 s after its latest report, so every token
counts for at least 60 s and less than 61 s (never let through early), and at most
61 buckets are live: the memory per subject is bounded whatever the traffic. A report
from a clock that stepped back joins the newest bucket (counted a little longer).
"""

from __future__ import annotations

from collections import deque

from aroutd.ratelimit.ticks import TICKS_PER_S
from aroutd.ratelimit.values import Step, Subject

__all__ = ["TPM_WINDOW_S", "TokenWindow", "tpm_step"]

TPM_WINDOW_S = 60
_WINDOW_TICKS = TPM_WINDOW_S * TICKS_PER_S

Bucket = tuple[int, int, int]  # (second, latest report in ticks, tokens)


class TokenWindow:
    """The tokens of one subject reported in the last 60 s, by second."""

    __slots__ = ("_buckets", "total")

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, latest, tokens], oldest first
        self.total = 0

    def prune(self, now: int) -> None:
        """Drop the buckets that have left the window at ``now`` (ticks)."""
        buckets = self._buckets
        while buckets and buckets[0][1] + _WINDOW_TICKS <= now:
            self.total -= buckets.popleft()[2]

    def add(self, tokens: int, now: int) -> None:
        self.prune(now)
        second = now // TICKS_PER_S
        newest = self._buckets[-1] if self._buckets else None
        if newest is not None and second <= newest[0]:
            newest[1] = max(newest[1], now)
            newest[2] += tokens
        else:
            self._buckets.append([second, now, tokens])
        self.total += tokens

    def live(self, now: int) -> bool:
        self.prune(now)
        return bool(self._buckets)

    def wait_ticks(self, limit: int, now: int) -> int:
        """Ticks until the window holds fewer than ``limit`` tokens (0: now)."""
        self.prune(now)
        left = self.total
        for _, latest, tokens in self._buckets:
            if left < limit:
                break
            left -= tokens
            if left < limit:
                return latest + _WINDOW_TICKS - now
        return 0

    def buckets(self, now: int) -> tuple[Bucket, ...]:
        self.prune(now)
        return tuple((s, latest, tokens) for s, latest, tokens in self._buckets)


def tpm_step(subject: Subject, window: TokenWindow | None, limit: int, now: int) -> Step:
    """Check one ``tpm_limit`` at ``now`` (ticks); it consumes nothing when admitted."""
    wait = 0 if window is None else window.wait_ticks(limit, now)
    return Step(
        reason="tpm",
        subject=subject,
        wait_ticks=wait,
        state_after=0,
        limit=0,  # no X-RateLimit-* headers
        remaining=0,
        reset_s=0,
        reset_after_s=0,
    )
