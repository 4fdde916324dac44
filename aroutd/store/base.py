"""The state store interface: what must outlive a request, and a restart (SPEC §7-§10, §14).

:class:`StateStore` is what the daemon holds; ``sqlite.SqliteStore`` is the embedded
default and a Redis store (§14) implements the same protocol for several hosts.

The methods are synchronous and may block on disk or network: the trio shell calls
them from worker threads (``trio.to_thread.run_sync``), never on the event loop, so
every implementation must be safe to call from several threads at once.

Times are aware UTC datetimes passed in by the caller (the store never reads a clock),
so tests drive expiry with plain values.

This first piece covers wallet sign-in (§8). The management API (keys created over
HTTP, §7), usage accounting (counters per key and tenant and period, §9) and x402
(wallet balances, credits, seen payments, §10) extend this protocol with their own
methods; each keeps the rule that an acknowledged write is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["StateStore", "WalletAccount"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletAccount:
    """A wallet known to aroutd, created by its first sign-in or payment."""

    id: str  # opaque, stable: the "key_id" of the sign-in answer and of logs
    account: str  # CAIP-10, e.g. "eip155:8453:0xAbC…" (EVM addresses EIP-55 checksummed)
    created_at: datetime  # aware, UTC


class StateStore(Protocol):
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

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...
