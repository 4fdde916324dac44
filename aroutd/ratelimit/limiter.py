"""The in-memory rate limiter (SPEC §9): every limit of every subject, checked at once.

Rules:

- A request is checked against every ``(subject, Limits)`` given (the key, its
  tenant or a wallet, each with its own figures) and admitted only if every limit of
  every subject admits it. Everything is checked first and committed after, so a
  refused request counts nothing anywhere (the key keeps its figures when only the
  tenant refuses).
- Refused: the reason and subject of the limit with the longest wait, and
  ``retry_after_s``, the longest wait in whole seconds rounded up (at least 1). Each
  limit, once admitting, keeps admitting while nothing else arrives, so a request
  exactly ``retry_after_s`` later is admitted.
- State is kept per subject only and limits are passed with every call, so a changed
  limit applies from the next request (see gcra for how a bucket is reread).
- Memory: state equivalent to none is dropped: a TAT at or before ``now``, a count
  of a past UTC day, a token window empty for 60 s. :meth:`Limiter.sweep` drops it
  all (O(resident)); an operation also sweeps once the resident entries have doubled
  since the last sweep, or after as many operations as there were entries then (both
  at least ``SWEEP_MIN_ENTRIES``), O(1) amortized. So at most
  ``max(SWEEP_MIN_ENTRIES, 2 × live at the last sweep)`` entries stay resident, and a
  subject seen once does not stay. An rpm or tpm state lives about a minute; an rpd
  count lives until 00:00 UTC, however early in the day it was used.

Pure: ``now`` is Unix seconds passed in; nothing reads a clock. Not thread-safe: one
trio event loop owns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aroutd.ratelimit.daily import DayCount, rpd_step
from aroutd.ratelimit.gcra import rpm_step
from aroutd.ratelimit.nearest import nearest
from aroutd.ratelimit.ticks import retry_after_s, to_ticks, utc_day
from aroutd.ratelimit.tokens import Bucket, TokenWindow, tpm_step
from aroutd.ratelimit.values import Admitted, Decision, Limits, Refused, Step, Subject, Window

__all__ = ["SWEEP_MIN_ENTRIES", "Limiter", "Snapshot"]

SWEEP_MIN_ENTRIES = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The live state at one instant (ticks), for comparing: what is absent is not here."""

    rpm: Mapping[Subject, int]  # the TAT
    rpd: Mapping[Subject, DayCount]
    tpm: Mapping[Subject, tuple[Bucket, ...]]


class Limiter:
    """Implements :class:`~aroutd.ratelimit.backend.LimiterBackend` in memory."""

    def __init__(self) -> None:
        self._tat: dict[Subject, int] = {}
        self._days: dict[Subject, DayCount] = {}
        self._tokens: dict[Subject, TokenWindow] = {}
        self._ops = 0
        self._sweep_at_ops = SWEEP_MIN_ENTRIES
        self._sweep_at_size = SWEEP_MIN_ENTRIES

    @property
    def resident(self) -> int:
        """How many per-subject states are held (up to three per subject)."""
        return len(self._tat) + len(self._days) + len(self._tokens)

    def check(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Decision:
        t = to_ticks(now)
        self._operation(t)
        steps = self._steps(checks, t)
        worst = None  # the longest wait; the first such step on a tie, as max() would
        for step in steps:
            if step.wait_ticks > 0 and (worst is None or step.wait_ticks > worst.wait_ticks):
                worst = step
        if worst is not None:
            return Refused(
                reason=worst.reason,
                subject=worst.subject,
                retry_after_s=retry_after_s(worst.wait_ticks),
                window=nearest(steps, admitted=False),
            )
        self._commit(steps, t)
        return Admitted(window=nearest(steps, admitted=True))

    def peek(self, checks: Sequence[tuple[Subject, Limits]], now: float) -> Window | None:
        t = to_ticks(now)
        self._operation(t)
        return nearest(self._steps(checks, t), admitted=None)

    def record_tokens(self, subject: Subject, tokens: int, now: float) -> None:
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens}")
        t = to_ticks(now)
        self._operation(t)
        if tokens:
            window = self._tokens.get(subject)
            if window is None:
                window = self._tokens[subject] = TokenWindow()
            window.add(tokens, t)

    def sweep(self, now: float) -> int:
        """Drop every state equivalent to none at ``now``; return how many were dropped."""
        return self._sweep(to_ticks(now))

    def snapshot(self, now: float) -> Snapshot:
        t = to_ticks(now)
        day = utc_day(t)
        return Snapshot(
            rpm={s: tat for s, tat in self._tat.items() if tat > t},
            rpd={s: c for s, c in self._days.items() if c[0] == day},
            tpm={s: b for s, w in self._tokens.items() if (b := w.buckets(t))},
        )

    def _steps(self, checks: Sequence[tuple[Subject, Limits]], t: int) -> list[Step]:
        if len(checks) > 1 and len({subject for subject, _ in checks}) != len(checks):
            raise ValueError("a subject is checked twice in one request")
        steps: list[Step] = []
        for subject, limits in checks:
            if limits.rpm is not None:
                steps.append(rpm_step(subject, self._tat.get(subject), limits.rpm, t))
            if limits.rpd is not None:
                steps.append(rpd_step(subject, self._days.get(subject), limits.rpd, t))
            if limits.tpm is not None:
                steps.append(tpm_step(subject, self._tokens.get(subject), limits.tpm, t))
        return steps

    def _commit(self, steps: list[Step], t: int) -> None:
        day = utc_day(t)
        for step in steps:
            if step.reason == "rpm":
                self._tat[step.subject] = step.state_after
            elif step.reason == "rpd":
                self._days[step.subject] = (day, step.state_after)

    def _operation(self, t: int) -> None:
        self._ops += 1
        if self._ops >= self._sweep_at_ops or (
            len(self._tat) + len(self._days) + len(self._tokens) >= self._sweep_at_size
        ):
            self._sweep(t)

    def _sweep(self, t: int) -> int:
        before = self.resident
        day = utc_day(t)
        # new dicts rather than deletions: a dict never shrinks its table on deletion
        self._tat = {s: tat for s, tat in self._tat.items() if tat > t}
        self._days = {s: c for s, c in self._days.items() if c[0] >= day}
        self._tokens = {s: w for s, w in self._tokens.items() if w.live(t)}
        size = self.resident
        self._sweep_at_size = max(SWEEP_MIN_ENTRIES, 2 * size)
        self._sweep_at_ops = self._ops + max(SWEEP_MIN_ENTRIES, size)
        return before - size
