"""The state store interface: what must outlive a request, and a restart (SPEC §7-§10, §14).

:class:`StateStore` is what the daemon holds; ``sqlite.SqliteStore`` is the embedded
default and a Redis store (§14) implements the same protocol for several hosts.

The methods are synchronous and may block on disk or network: the trio shell calls
them from worker threads (``trio.to_thread.run_sync``), never on the event loop, so
every implementation must be safe to call from several threads at once.

Times are aware UTC datetimes passed in by the caller (the store never reads a clock),
so tests drive expiry with plain values.

It holds wallet sign-in (§8), the keys created over the management API (§7), usage
counters per key, tenant, wallet and period (§9) and the wallets' transactions log
(credits and debits, §9): a wallet's balance is its ``credits`` row less its lifetime
usage row; and x402 payments (§10): each one seen is claimed once (so a replay is
refused before any facilitator call, by every process on the store), its settlement
recorded, then credited. Every part keeps the rule that an acknowledged write is durable.

Keys: every write of a key gives it the next number of one change sequence, shared by
every process on the store, and a deleted key leaves a tombstone with its number. A
daemon holds the keys in memory (:mod:`aroutd.keytable.stored`) and keeps them current
with :meth:`StateStore.key_changes` (its own writes and other instances' alike), so a
request never waits on the store.

Moving a deployment from sqlite to Redis (``aroutd state migrate``) reads the sqlite
store as :data:`StateRecord` values (``SqliteStore.export``) and writes them into Redis
(``RedisStore.import_records``): the dataclasses below, and :class:`NonceRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from aroutd.keytable.table import KeyEntry

__all__ = [
    "BalanceStore",
    "KeyChange",
    "KeyStore",
    "NonceRecord",
    "Payment",
    "PaymentStore",
    "StateRecord",
    "StateStore",
    "Transaction",
    "UsageRow",
    "UsageStore",
    "WalletAccount",
    "WalletStore",
]


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One key as of change number ``seq``; ``entry`` None: deleted."""

    seq: int
    digest: bytes = field(repr=False)
    entry: KeyEntry | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletAccount:
    """A wallet known to aroutd, created by its first sign-in or payment."""

    id: str  # opaque, stable: the "key_id" of the sign-in answer and of logs
    account: str  # CAIP-10, e.g. "eip155:8453:0xAbC…" (EVM addresses EIP-55 checksummed)
    created_at: datetime  # aware, UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """The usage of one subject (``key:<hash>``, ``tenant:<id>``) in one period
    (``lifetime``, ``daily:2026-12-01``, …): a delta to add, or, with ``seq``, the
    totals the store holds as of change number ``seq``."""

    subject: str
    period: str
    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    requests: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """One line of a wallet's transactions log: a credit (a payment, an operator's grant)
    or the debit of one request's usage."""

    id: str  # "txn_…": unique; writing the same id twice adds it once
    account: str  # the wallet's CAIP-10 account
    type: Literal["credit", "usage"]
    amount: float  # USD: a credit is positive, a debit negative
    description: str
    created_at: datetime  # aware, UTC
    request_id: str | None = None  # the request that paid for (or spent) it
    transaction: str | None = None  # a credit's on-chain transaction (x402)
    network: str | None = None  # its CAIP-2 network


@dataclass(frozen=True, slots=True, kw_only=True)
class NonceRecord:
    """A sign-in nonce seen (SPEC §8), refused until ``expires_at``."""

    nonce: str
    expires_at: datetime  # aware, UTC


PaymentState = Literal["pending", "settled", "credited", "failed", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Payment:
    """An x402 payment as the store knows it. ``pending``: claimed, the facilitator not
    yet done; ``settled``: on chain, not yet credited (a restart credits it);
    ``credited``; ``failed``: refused (verification or settlement said no);
    ``unknown``: the facilitator's settle answer never came (an operator looks)."""

    id: str  # the replay identity: EVM "evm:<chain>:<from>:<nonce>", Solana "svm:<tx sig>"
    account: str  # the payer's CAIP-10 account
    network: str
    usd: float
    state: PaymentState = "pending"
    transaction: str | None = None  # the settled on-chain transaction
    request_id: str | None = None
    created_at: datetime  # aware, UTC


StateRecord = KeyChange | UsageRow | WalletAccount | Transaction | Payment | NonceRecord
"""One item of a store's state, as ``SqliteStore.export`` yields it: a key (its latest
change, tombstones too), a usage row's totals, a wallet, a transactions log line, a
payment, a nonce not yet expired."""


class WalletStore(Protocol):
    """Wallet sign-in's part of the store (SPEC §8)."""

    def use_nonce(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        """Record a sign-in nonce; True on its first use, False when seen before.

        True is returned only once the record is durable (it survives kill -9), so the
        same nonce is refused after a restart. A record may be forgotten once
        ``expires_at`` (the last moment its message could still verify) is past; a
        nonce whose earlier record has expired counts as unused.
        """
        ...

    def ensure_wallet(self, account: str, now: datetime) -> WalletAccount:
        """The wallet account for a CAIP-10 ``account``, created (durably) on first call."""
        ...


class KeyStore(Protocol):
    """The management API's part of the store (SPEC §7)."""

    def key_changes(self, after: int) -> Sequence[KeyChange]:
        """Every key written or deleted after change number ``after`` (0: all of them), the
        latest state of each, in change order. Tombstones are included."""
        ...

    def create_key(self, entry: KeyEntry) -> KeyChange:
        """Store a new key (``entry.digest`` not known before), durably."""
        ...

    def update_key(
        self, digest: bytes, tenant: str | None, change: Callable[[KeyEntry], KeyEntry]
    ) -> KeyChange | None:
        """Replace a stored key by ``change(current)``, read and written in one transaction
        (so concurrent writers from several processes never lose each other's changes);
        ``change`` may raise to refuse, which writes nothing. None when no such key, or it
        belongs to another tenant than ``tenant`` (None: any tenant)."""
        ...

    def delete_key(self, digest: bytes, tenant: str | None) -> KeyChange | None:
        """Delete a stored key, durably, leaving a tombstone; None as for update_key."""
        ...


class UsageStore(Protocol):
    """Usage accounting's part of the store (SPEC §9)."""

    def add_usage(
        self, deltas: Sequence[UsageRow], debits: Sequence[Transaction] = ()
    ) -> Sequence[UsageRow]:
        """Add every delta and log every debit (one transaction, durable when this
        returns); the totals of the rows it touched, each with its new change number. A
        debit whose id is already logged is not logged again."""
        ...

    def usage_changes(self, after: int) -> Sequence[UsageRow]:
        """The totals of every row changed after change number ``after`` (0: all)."""
        ...


class BalanceStore(Protocol):
    """Wallet balances (SPEC §9): credits and the transactions log."""

    def credit(self, tx: Transaction) -> UsageRow:
        """Log the credit ``tx`` and add it to the account's ``credits`` row, in one
        transaction, durable when this returns; the row's new totals. A credit whose id
        is already logged changes nothing (so a retried credit is never counted twice)."""
        ...

    def transactions(self, account: str, offset: int, limit: int) -> Sequence[Transaction]:
        """The account's log, newest first."""
        ...


class PaymentStore(Protocol):
    """x402's part of the store (SPEC §10)."""

    def claim_payment(self, payment: Payment) -> bool:
        """Record ``payment`` as pending; False (and nothing written) when its id was
        seen before, in any state: a replay. Durable when True is returned."""
        ...

    def release_payment(self, payment_id: str) -> None:
        """Forget a pending claim that never reached the chain (the facilitator could not
        be asked), so the same payment can be tried again."""
        ...

    def mark_payment(
        self, payment_id: str, state: PaymentState, transaction: str | None = None
    ) -> None:
        """Move a payment to ``settled`` (with its transaction), ``failed`` or ``unknown``."""
        ...

    def credit_payment(self, payment_id: str, tx: Transaction) -> UsageRow | None:
        """A settled payment credited: the credit ``tx`` logged and added and the payment
        marked ``credited``, in one transaction; the account's credits row. None when the
        payment is not ``settled`` (already credited, or never settled)."""
        ...

    def settled_payments(self) -> Sequence[Payment]:
        """Payments settled but not credited (a crash between the two): credited at start."""
        ...


class StateStore(WalletStore, KeyStore, UsageStore, BalanceStore, PaymentStore, Protocol):
    """Everything the daemon keeps: each part above, and closing."""

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...
