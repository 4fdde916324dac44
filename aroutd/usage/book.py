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

A wallet (subject ``wallet:<CAIP-10>``) has one more row, ``credits``: what was paid in,
committed before the payment's answer (:meth:`apply` of the store's row). Its balance
is credits less lifetime usage; each of its charged requests is also a debit line of
its transactions log, pending and committed with the usage.

Pure: values and ``now`` in, figures out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from aroutd.store.base import Transaction, UsageRow
from aroutd.usage.periods import PERIODS, period_key

__all__ = [
    "CREDITS_PERIOD",
    "Spent",
    "UsageBook",
    "key_subject",
    "tenant_subject",
    "wallet_subject",
]

CREDITS_PERIOD = "credits"  # a wallet's row of what it paid in
MAX_PENDING_DEBITS = 100_000

_Slot = tuple[str, str]  # (subject, period)


def key_subject(key_hash: str) -> str:
    return f"key:{key_hash}"


def tenant_subject(tenant: str) -> str:
    return f"tenant:{tenant}"


def wallet_subject(account: str) -> str:
    return f"wallet:{account}"


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


@lru_cache(maxsize=4)
def _periods(day: date) -> tuple[str, ...]:
    """The counter keys a response on ``day`` (UTC) adds to: computed once a day."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return ("lifetime", *(period_key(p, noon) for p in PERIODS))


def _row(slot: _Slot, sums: list[float]) -> UsageRow:
    usd, input_tokens, output_tokens, cached, requests = sums
    return UsageRow(
        subject=slot[0],
        period=slot[1],
        usd=usd,
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cached_input_tokens=int(cached),
        requests=int(requests),
    )


class UsageBook:
    __slots__ = ("_debits", "_debits_in_flight", "_held", "_in_flight", "_pending", "cursor")

    def __init__(self) -> None:
        self._debits: list[Transaction] = []  # wallets' debit lines, pending
        self._debits_in_flight: list[Transaction] = []
        self._held: dict[_Slot, UsageRow] = {}  # the store's totals, with their seq
        # added here, not yet being committed: [usd, input, output, cached input, requests]
        self._pending: dict[_Slot, list[float]] = {}
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
        debit: Transaction | None = None,
    ) -> None:
        """One finished response: the same figures for every subject and period (plain
        sums on the request path; rows are made only when a batch is taken), and a
        wallet's ``debit`` line."""
        if debit is not None and len(self._debits) < MAX_PENDING_DEBITS:
            # past the bound (a store away for long) the log line is dropped; the
            # balance is not: it is the usage rows, whose number stays bounded
            self._debits.append(debit)
        periods = _periods(now.astimezone(UTC).date())
        pending = self._pending
        for subject in subjects:
            for period in periods:
                sums = pending.get((subject, period))
                if sums is None:
                    pending[(subject, period)] = [
                        usd,
                        input_tokens,
                        output_tokens,
                        cached_input_tokens,
                        1,
                    ]
                else:
                    sums[0] += usd
                    sums[1] += input_tokens
                    sums[2] += output_tokens
                    sums[3] += cached_input_tokens
                    sums[4] += 1

    def pending_rows(self) -> int:
        """Rows and debit lines not yet in the store (pending and in flight)."""
        return (
            len(self._pending)
            + len(self._in_flight)
            + len(self._debits)
            + len(self._debits_in_flight)
        )

    def has_pending(self) -> bool:
        return bool(self._pending) or bool(self._debits)

    def take(self) -> list[UsageRow]:
        """The pending deltas, now in flight to the store (one commit at a time), with
        the debit lines of :meth:`debits_in_flight`."""
        if self._in_flight or self._debits_in_flight:
            raise RuntimeError("a commit is already in flight")
        pending, self._pending = self._pending, {}
        self._debits_in_flight, self._debits = self._debits, []
        self._in_flight = {slot: _row(slot, sums) for slot, sums in pending.items()}
        return list(self._in_flight.values())

    def debits_in_flight(self) -> list[Transaction]:
        return list(self._debits_in_flight)

    def committed(self, rows: Sequence[UsageRow]) -> None:
        """The in-flight deltas are in the store: ``rows`` are its new totals."""
        self._in_flight, self._debits_in_flight = {}, []
        self.apply(rows)

    def restore(self) -> None:
        """The commit failed: the in-flight deltas are pending again."""
        self._debits[:0] = self._debits_in_flight
        self._debits_in_flight = []
        for slot, delta in self._in_flight.items():
            sums = self._pending.setdefault(slot, [0.0, 0, 0, 0, 0])
            sums[0] += delta.usd
            sums[1] += delta.input_tokens
            sums[2] += delta.output_tokens
            sums[3] += delta.cached_input_tokens
            sums[4] += delta.requests
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
        for part in (self._held, self._in_flight):
            row = part.get(slot)
            if row is not None:
                total += row.usd
        sums = self._pending.get(slot)
        return total if sums is None else total + sums[0]

    def balance(self, account: str) -> float:
        """A wallet's USD balance: what it paid in, less what it has spent."""
        subject = wallet_subject(account)
        return self.usd(subject, CREDITS_PERIOD) - self.usd(subject, "lifetime")

    def spent(self, subject: str, now: datetime) -> Spent:
        return Spent(
            usage=self.usd(subject, "lifetime"),
            daily=self.usd(subject, period_key("daily", now)),
            weekly=self.usd(subject, period_key("weekly", now)),
            monthly=self.usd(subject, period_key("monthly", now)),
        )
