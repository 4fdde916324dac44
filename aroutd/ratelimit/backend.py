"""The rate-limiter interface (SPEC §9): what the daemon holds, whatever keeps the counts.

:class:`~aroutd.ratelimit.limiter.Limiter` keeps them in memory, exact within one
instance. A Redis backend (SPEC §14) implements the same protocol to be exact across
instances: one atomic script per :meth:`LimiterBackend.check` that reads every
subject's state, decides by the same rules (gcra, daily, tokens) and writes only if
all admit, and one per :meth:`LimiterBackend.record_tokens`; it may let the server
expire state by TTL instead of sweeping.

The methods are synchronous. A backend that blocks on the network is called from a
worker thread, as the state store is (``aroutd/store/base.py``), and must be safe to
call from several threads; the in-memory limiter never blocks and is called on the
event loop only. ``now`` is Unix seconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aroutd.ratelimit.values import Decision, Limits, Subject, Window

__all__ = ["LimiterBackend"]


class LimiterBackend(Protocol):
    def check(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Decision:
        """Admit and count the request if every (subject, limits) admits it, else refuse
        it and count nothing anywhere. Each subject appears at most once."""
        ...

    def peek(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Window | None:
        """The ``X-RateLimit-*`` window of ``checks`` as it stands (None: no rpm or rpd
        limit), for an answer that counts nothing; nothing is written."""
        ...

    def record_tokens(self, subject: Subject, tokens: int, now: float) -> None:
        """Add ``tokens`` (input + output, ``>= 0``) reported at ``now`` to ``subject``'s
        tpm window."""
        ...
