"""Writing a state into the Redis store (``aroutd state migrate``, SPEC §1, §14).

:meth:`aroutd.store.redis.RedisStore.import_records` sends each item of another store's
state (:data:`aroutd.store.base.StateRecord`, as ``SqliteStore.export`` yields them) to
one ``IMPORT_*`` script of :mod:`aroutd.store.redis_scripts`. Each sets its item to the
state given, absolutely: usage totals are set, never added; a log line is written once
per id; a key keeps its fields. The rules, which make a second run change nothing:

- An item Redis already holds with the same data is left as it is (no new change
  number, so no instance reads it again). Another version of it (Redis newer, or
  older) is replaced: Redis ends with the version sent, for every item sent.
- Keys and usage rows take new change numbers when written, in the order they are
  sent: a row left as it is must also sit after the one sent before it in the feed,
  else it is written again, so a feed read gives them in the sender's order.
- Items Redis has and the sender does not are left alone.
- A nonce Redis holds with a later expiry keeps it (refused for longer: the safe side).
- A wallet keeps the id sent (Redis may have made another for the same account).
- A payment's ``updated_at`` is the import's ``now`` (not in :class:`Payment`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aroutd.store import redis_rows as rows
from aroutd.store.base import (
    KeyChange,
    NonceRecord,
    Payment,
    StateRecord,
    Transaction,
    UsageRow,
    WalletAccount,
)
from aroutd.store.redis import (
    _KEY_FEED,
    _KEY_ROW,
    _KEY_SEQ,
    _NONCE,
    _PAY_ROW,
    _PAY_SETTLED,
    _TTL_S,
    _TX_COUNTER,
    _TX_LINES,
    _TX_LOG,
    _USAGE_FEED,
    _USAGE_ROW,
    _USAGE_SEQ,
    _WALLET,
    _member,
)

__all__ = ["KINDS", "Imported", "import_records"]

KINDS = ("keys", "usage", "wallets", "transactions", "payments", "nonces")
Write = Callable[[str, Sequence[str], Sequence[Any]], Any]  # script name, KEYS, ARGV


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """What one kind of item came to: ``copied`` sent, of which ``written`` changed Redis
    (the others it held already)."""

    kind: str  # one of KINDS
    copied: int
    written: int


def import_records(write: Write, records: Iterable[StateRecord], now: datetime) -> list[Imported]:
    """Each record set in Redis through ``write`` (RedisStore._write); counts per kind."""
    copied = dict.fromkeys(KINDS, 0)
    written = dict.fromkeys(KINDS, 0)
    last = {"keys": 0, "usage": 0}  # the seq the previous key / usage row got
    for record in records:
        kind, name, keys, args = _step(record, last, now)
        if kind == "nonces" and not args:
            continue  # expired by now: nothing to refuse any more
        result = write(name, keys, args)
        if kind in last:
            last[kind], changed = int(result[0]), int(result[1])
        else:
            changed = int(result)
        copied[kind] += 1
        written[kind] += changed
    return [Imported(kind=k, copied=copied[k], written=written[k]) for k in KINDS]


def _step(
    record: StateRecord, last: dict[str, int], now: datetime
) -> tuple[str, str, list[str], list[Any]]:
    """The kind, script, KEYS and ARGV that set ``record``."""
    match record:
        case KeyChange(digest=digest, entry=entry):
            hexdigest = digest.hex()
            keys = [_KEY_ROW + hexdigest, _KEY_SEQ, _KEY_FEED]
            if entry is None:
                return "keys", "IMPORT_KEY", keys, [hexdigest, last["keys"], 1, "", ""]
            args = [hexdigest, last["keys"], 0, entry.tenant, rows.entry_json(entry)]
            return "keys", "IMPORT_KEY", keys, args
        case UsageRow():
            return "usage", "IMPORT_USAGE", *_usage(record, last["usage"])
        case WalletAccount(id=wallet_id, account=account, created_at=created):
            held = json.dumps({"id": wallet_id, "created_at": created.timestamp()})
            return "wallets", "IMPORT_WALLET", [_WALLET + account], [held]
        case Transaction():
            keys = [_TX_LINES, _TX_COUNTER, _TX_LOG + record.account]
            args = [record.id, rows.tx_json(record), record.created_at.timestamp(), _TX_LOG]
            return "transactions", "IMPORT_TX", keys, args
        case Payment():
            keys = [_PAY_ROW + record.id, _PAY_SETTLED]
            return "payments", "IMPORT_PAYMENT", keys, _payment_args(record, now)
        case NonceRecord(nonce=nonce, expires_at=expires_at):
            ttl_ms = int((expires_at - now) / timedelta(milliseconds=1))
            args = [expires_at.timestamp(), ttl_ms] if ttl_ms > 0 else []
            return "nonces", "IMPORT_NONCE", [_NONCE + nonce], args
    raise TypeError(f"not a state record: {type(record).__name__}")


def _usage(r: UsageRow, last: int) -> tuple[list[str], list[Any]]:
    member = _member(r.subject, r.period)
    keys = [_USAGE_SEQ, _USAGE_FEED, _USAGE_ROW + member]
    ttl_s = _TTL_S.get(r.period.split(":")[0], 0)
    args = [member, last, r.usd, r.input_tokens, r.output_tokens, r.cached_input_tokens]
    return keys, [*args, r.requests, ttl_s]


def _payment_args(p: Payment, now: datetime) -> list[Any]:
    """ARGV of IMPORT_PAYMENT: the fields as ``claim_payment`` and ``mark_payment`` write
    them (an absent ``tx_hash`` or ``request_id`` is not a field)."""
    fields: dict[str, str | float] = {
        "state": p.state,
        "account": p.account,
        "network": p.network,
        "usd": p.usd,
        "created_at": p.created_at.timestamp(),
    }
    if p.transaction is not None:
        fields["tx_hash"] = p.transaction
    if p.request_id is not None:
        fields["request_id"] = p.request_id
    return [p.id, now.timestamp(), *(v for pair in fields.items() for v in pair)]
