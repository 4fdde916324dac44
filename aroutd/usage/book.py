"""Usage in memory (SPEC §9): what each key and tenant spent, per period, right now.

The request path adds to the book and reads it; nothing on it waits for the disk. A
subject's figure in a period is the store's total (as of the last change number seen)
plus what this instance added since and has not yet seen committed:

- :meth:`UsageBook.add` records a finished response as pending deltas for every
  subject (the key, its tenant) and period (lifetime and the current day, week and
  month, so a new period starts at zero on its own);
- the committer takes them (:meth:`take`), adds them to the store in one
  transaction, and gives back the rows it got (:meth:`committed`); a failed commit
  gives the deltas back (:meth:`restore`) to be tried again;
- rows other instances changed come from a poll (:meth:`apply`). A row applies only
  when newer than the one held, so an older read never undoes a newer total.

Pure: values and ``now`` in, figures out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from aroutd.store.base import UsageRow
from aroutd.usage.periods import PERIODS, period_key

__all__ = ["Spent", "UsageBook", "key_subject", "tenant_subject"]

_Slot = tuple[str, str]  # (subject, period)


def key_subject(key_hash: str) -> str:
    return f"key:{key_hash}"


def tenant_subject(tenant: str) -> str:
    return f"tenant:{tenant}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Spent:
    """USD of a subject: lifetime and in the current day, week and month."""

    usage: float = 0.0
    daily: float = 0.0
    weekly: float = 0.0
    monthly: float = 0.0

    def of(self, reset: str | None) -> float:
        """The figure a limit with this ``limit_reset`` is held to."""
        if reset is None:
            return self.usage
        return float(getattr(self, reset))


def _plus(a: UsageRow, b: UsageRow) -> UsageRow:
    return replace(
        a,
        usd=a.usd + b.usd,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        requests=a.requests + b.requests,
    )


class UsageBook:
    __slots__ = ("_held", "_in_flight", "_pending", "cursor")

    def __init__(self) -> None:
        self._held: dict[_Slot, UsageRow] = {}  # the store's totals, with their seq
        self._pending: dict[_Slot, UsageRow] = {}  # added here, not yet being committed
        self._in_flight: dict[_Slot, UsageRow] = {}  # taken by the committer
        self.cursor = 0  # the highest change number seen

    def add(
        self,
        subjects: Iterable[str],
        now: datetime,
        *,
        usd: float,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
    ) -> None:
        """One finished response: the same figures for every subject and period."""
        periods = ["lifetime", *(period_key(p, now) for p in PERIODS)]
        for subject in subjects:
            for period in periods:
                delta = UsageRow(
                    subject=subject,
                    period=period,
                    usd=usd,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_input_tokens=cached_input_tokens,
                    requests=1,
                )
                slot = (subject, period)
                old = self._pending.get(slot)
                self._pending[slot] = delta if old is None else _plus(old, delta)

    def has_pending(self) -> bool:
        return bool(self._pending)

    def take(self) -> list[UsageRow]:
        """The pending deltas, now in flight to the store (one commit at a time)."""
        if self._in_flight:
            raise RuntimeError("a commit is already in flight")
        self._in_flight, self._pending = self._pending, {}
        return list(self._in_flight.values())

    def committed(self, rows: Sequence[UsageRow]) -> None:
        """The in-flight deltas are in the store: ``rows`` are its new totals."""
        self._in_flight = {}
        self.apply(rows)

    def restore(self) -> None:
        """The commit failed: the in-flight deltas are pending again."""
        for slot, delta in self._in_flight.items():
            old = self._pending.get(slot)
            self._pending[slot] = delta if old is None else _plus(delta, old)
        self._in_flight = {}

    def apply(self, rows: Iterable[UsageRow]) -> None:
        """Totals read from the store; each only when newer than the one held."""
        for row in rows:
            self.cursor = max(self.cursor, row.seq)
            slot = (row.subject, row.period)
            held = self._held.get(slot)
            if held is None or held.seq < row.seq:
                self._held[slot] = row

    def usd(self, subject: str, period: str) -> float:
        slot = (subject, period)
        total = 0.0
        for part in (self._held, self._in_flight, self._pending):
            row = part.get(slot)
            if row is not None:
                total += row.usd
        return total

    def spent(self, subject: str, now: datetime) -> Spent:
        return Spent(
            usage=self.usd(subject, "lifetime"),
            daily=self.usd(subject, period_key("daily", now)),
            weekly=self.usd(subject, period_key("weekly", now)),
            monthly=self.usd(subject, period_key("monthly", now)),
        )
