"""The embedded state store: one sqlite file on one host (SPEC §2 ``[state]``, §14).

- The folder is created 0700 and the file 0600: it holds account data.
- WAL journal with ``synchronous=FULL``: a write is on disk when its statement returns,
  so an acknowledged nonce or wallet survives kill -9 and power loss.
- One connection shared by the daemon's worker threads (``check_same_thread=False``)
  behind a lock; each write is its own autocommit transaction.
- The schema is versioned with ``PRAGMA user_version``: ``_MIGRATIONS[i]`` moves a file
  from version i to i + 1, in place and all or nothing. Later features (usage, balances)
  append.
- Usage (§9) is one row per subject and period, numbered by ``usage.seq`` like keys; a
  wallet's credits are the row ``(wallet:<account>, credits)``, so its balance (credits
  less lifetime usage) reaches every instance by the same poll. Every credit and debit
  is also a line of ``transactions``, written in the same transaction as its row.
- Keys of the management API (§7): their sha256 and fields, never the key. A write takes
  the next number of ``api_keys.seq`` inside a ``BEGIN IMMEDIATE`` transaction, so the
  numbers are committed in order by every process sharing the file, and other instances
  find the change with one indexed query (:meth:`SqliteStore.key_changes`).
- :meth:`SqliteStore.export` reads the whole state for ``aroutd state migrate`` on a
  connection of its own, in one read transaction: a snapshot (WAL), consistent while a
  daemon keeps writing, and never blocking its writes.

A database that cannot be opened is a ConfigError (startup fails, naming the file); an
error while serving is 503 ``state store unavailable``, the cause kept in the traceback.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.keytable.table import KeyEntry
from aroutd.store.base import (
    KeyChange,
    NonceRecord,
    Payment,
    PaymentState,
    StateRecord,
    Transaction,
    UsageRow,
    WalletAccount,
)
from aroutd.usage.book import CREDITS_PERIOD, wallet_subject

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_T = TypeVar("_T")
_BUSY_S = 5.0  # wait this long for another process's write lock
_PURGE_EVERY = timedelta(seconds=60)
_MIGRATIONS = (
    # 0 -> 1: wallet sign-in (SPEC §8)
    """
    CREATE TABLE siwx_nonces (
        nonce TEXT PRIMARY KEY,
        expires_at REAL NOT NULL  -- unix seconds; the row may go after this
    ) WITHOUT ROWID;
    CREATE INDEX siwx_nonces_expires_at ON siwx_nonces (expires_at);
    CREATE TABLE wallets (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL UNIQUE,  -- CAIP-10
        created_at REAL NOT NULL
    );
    """,
    # 1 -> 2: keys created through the management API (SPEC §7)
    """
    CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,          -- sha256 hex of the key; the key itself is nowhere
        seq INTEGER NOT NULL UNIQUE,    -- change number of the latest write
        deleted INTEGER NOT NULL DEFAULT 0,  -- 1: a tombstone, kept for other instances
        id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        allowed_providers TEXT NOT NULL,  -- JSON array
        allowed_models TEXT NOT NULL,     -- JSON array
        spend_limit REAL,
        limit_reset TEXT,
        rpm_limit INTEGER,
        rpd_limit INTEGER,
        tpm_limit INTEGER,
        expires_at REAL,
        disabled INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        created_by TEXT
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant);
    """,
    # 2 -> 3: usage per subject and period (SPEC §9)
    """
    CREATE TABLE usage (
        subject TEXT NOT NULL,   -- key:<sha256 hex> | tenant:<id>
        period TEXT NOT NULL,    -- lifetime | daily:YYYY-MM-DD | weekly:<its Monday> | monthly:…
        seq INTEGER NOT NULL UNIQUE,  -- change number of the latest addition
        usd REAL NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (subject, period)
    ) WITHOUT ROWID;
    """,
    # 3 -> 4: the wallets' transactions log (SPEC §9); balances are usage rows
    """
    CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,   -- CAIP-10
        type TEXT NOT NULL,      -- credit | usage
        amount REAL NOT NULL,    -- USD: credits > 0, debits < 0
        description TEXT NOT NULL,
        request_id TEXT,
        tx_hash TEXT,            -- a credit's on-chain transaction
        network TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX transactions_account ON transactions (account, created_at);
    """,
    # 4 -> 5: x402 payments, each claimed once (SPEC §10)
    """
    CREATE TABLE payments (
        id TEXT PRIMARY KEY,     -- the replay identity
        state TEXT NOT NULL,     -- pending | settled | credited | failed | unknown
        account TEXT NOT NULL,   -- the payer, CAIP-10
        network TEXT NOT NULL,
        usd REAL NOT NULL,
        tx_hash TEXT,
        request_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX payments_state ON payments (state);
    """,
)
_PAYMENT_COLUMNS = "id, state, account, network, usd, tx_hash, request_id, created_at"
_TX_COLUMNS = "id, account, type, amount, description, request_id, tx_hash, network, created_at"
_USAGE_COLUMNS = (
    "subject, period, seq, usd, input_tokens, output_tokens, cached_input_tokens, requests"
)
_NEXT_USAGE_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM usage)"
SCHEMA_VERSION = len(_MIGRATIONS)
_KEY_COLUMNS = (
    "seq, hash, deleted, id, tenant, type, name, allowed_providers, allowed_models,"
    " spend_limit, limit_reset, rpm_limit, rpd_limit, tpm_limit, expires_at, disabled,"
    " created_at, updated_at, created_by"
)
_NEXT_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM api_keys)"


class SqliteStore:
    """:class:`aroutd.store.base.StateStore` on sqlite; open it with :meth:`open`."""

    __slots__ = ("_conn", "_lock", "_next_purge", "_path", "_wallets")

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._lock = threading.Lock()
        self._next_purge: datetime | None = None
        self._wallets: dict[str, WalletAccount] = {}  # immutable rows, safe to keep

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (creating folder, file and schema as needed) the database at ``path``."""
        try:
            folder = path.parent
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                folder.chmod(0o700)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=_BUSY_S
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError([f"{path}: cannot open the state database ({exc})"]) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError([f"{path}: cannot open the state database ({exc})"]) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise ServiceUnavailable("state store unavailable") from exc

    def use_nonce(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        now_s = now.timestamp()

        def op(conn: sqlite3.Connection) -> bool:
            if self._next_purge is None or now >= self._next_purge:
                conn.execute("DELETE FROM siwx_nonces WHERE expires_at <= ?", (now_s,))
                self._next_purge = now + _PURGE_EVERY
            # A row whose time is up counts as unused (the message it came with can no
            # longer verify), so it is taken over instead of refused.
            cur = conn.execute(
                "INSERT INTO siwx_nonces (nonce, expires_at) VALUES (?, ?) "
                "ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE siwx_nonces.expires_at <= ?",
                (nonce, expires_at.timestamp(), now_s),
            )
            return cur.rowcount == 1

        return self._run(op)

    def ensure_wallet(self, account: str, now: datetime) -> WalletAccount:
        known = self._wallets.get(account)
        if known is not None:
            return known

        def op(conn: sqlite3.Connection) -> WalletAccount:
            conn.execute(
                "INSERT INTO wallets (id, account, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO NOTHING",
                (f"wa_{secrets.token_hex(8)}", account, now.timestamp()),
            )
            wallet_id, created = conn.execute(
                "SELECT id, created_at FROM wallets WHERE account = ?", (account,)
            ).fetchone()
            return WalletAccount(
                id=wallet_id, account=account, created_at=datetime.fromtimestamp(created, UTC)
            )

        wallet = self._run(op)
        self._wallets[account] = wallet
        return wallet

    def key_changes(self, after: int) -> Sequence[KeyChange]:
        def op(conn: sqlite3.Connection) -> list[KeyChange]:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE seq > ? ORDER BY seq", (after,)
            )
            return [_change(row) for row in rows]

        return self._run(op)

    def create_key(self, entry: KeyEntry) -> KeyChange:
        def op(conn: sqlite3.Connection) -> KeyChange:
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({_NEXT_SEQ}, ?, 0{', ?' * 16})",
                (entry.digest.hex(), *_key_values(entry)),
            )
            return _read_key(conn, entry.digest)

        return self._write(op)

    def update_key(
        self, digest: bytes, tenant: str | None, change: Callable[[KeyEntry], KeyEntry]
    ) -> KeyChange | None:
        def op(conn: sqlite3.Connection) -> KeyChange | None:
            current = _read_key(conn, digest)
            if current.entry is None or (tenant is not None and current.entry.tenant != tenant):
                return None
            new = change(current.entry)
            conn.execute(
                f"UPDATE api_keys SET seq = {_NEXT_SEQ}, id = ?, tenant = ?, type = ?, name = ?,"
                " allowed_providers = ?, allowed_models = ?, spend_limit = ?, limit_reset = ?,"
                " rpm_limit = ?, rpd_limit = ?, tpm_limit = ?, expires_at = ?, disabled = ?,"
                " created_at = ?, updated_at = ?, created_by = ? WHERE hash = ?",
                (*_key_values(new), digest.hex()),
            )
            return _read_key(conn, digest)

        return self._write(op)

    def delete_key(self, digest: bytes, tenant: str | None) -> KeyChange | None:
        def op(conn: sqlite3.Connection) -> KeyChange | None:
            current = _read_key(conn, digest)
            if current.entry is None or (tenant is not None and current.entry.tenant != tenant):
                return None
            conn.execute(
                f"UPDATE api_keys SET seq = {_NEXT_SEQ}, deleted = 1 WHERE hash = ?",
                (digest.hex(),),
            )
            return _read_key(conn, digest)

        return self._write(op)

    def add_usage(
        self, deltas: Sequence[UsageRow], debits: Sequence[Transaction] = ()
    ) -> Sequence[UsageRow]:
        def op(conn: sqlite3.Connection) -> list[UsageRow]:
            out = [_add_row(conn, d) for d in deltas]
            for tx in debits:
                _log(conn, tx)
            return out

        return self._write(op)

    def credit(self, tx: Transaction) -> UsageRow:
        def op(conn: sqlite3.Connection) -> UsageRow:
            subject = wallet_subject(tx.account)
            if _log(conn, tx):
                return _add_row(
                    conn, UsageRow(subject=subject, period=CREDITS_PERIOD, usd=tx.amount)
                )
            row = conn.execute(
                f"SELECT {_USAGE_COLUMNS} FROM usage WHERE subject = ? AND period = ?",
                (subject, CREDITS_PERIOD),
            ).fetchone()
            return _usage_row(row)

        return self._write(op)

    def transactions(self, account: str, offset: int, limit: int) -> Sequence[Transaction]:
        def op(conn: sqlite3.Connection) -> list[Transaction]:
            rows = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE account = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (account, limit, offset),
            )
            return [_transaction(row) for row in rows]

        return self._run(op)

    def usage_changes(self, after: int) -> Sequence[UsageRow]:
        def op(conn: sqlite3.Connection) -> list[UsageRow]:
            rows = conn.execute(
                f"SELECT {_USAGE_COLUMNS} FROM usage WHERE seq > ? ORDER BY seq", (after,)
            )
            return [_usage_row(row) for row in rows]

        return self._run(op)

    def claim_payment(self, payment: Payment) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"INSERT INTO payments ({_PAYMENT_COLUMNS}, updated_at) VALUES"
                " (?, 'pending', ?, ?, ?, NULL, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    payment.id,
                    payment.account,
                    payment.network,
                    payment.usd,
                    payment.request_id,
                    payment.created_at.timestamp(),
                    payment.created_at.timestamp(),
                ),
            )
            return cur.rowcount == 1

        return self._write(op)

    def release_payment(self, payment_id: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM payments WHERE id = ? AND state = 'pending'", (payment_id,)
            )
        )

    def mark_payment(
        self, payment_id: str, state: PaymentState, transaction: str | None = None
    ) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE payments SET state = ?, tx_hash = coalesce(?, tx_hash),"
                " updated_at = ? WHERE id = ?",
                (state, transaction, datetime.now(UTC).timestamp(), payment_id),
            )
        )

    def credit_payment(self, payment_id: str, tx: Transaction) -> UsageRow | None:
        def op(conn: sqlite3.Connection) -> UsageRow | None:
            cur = conn.execute(
                "UPDATE payments SET state = 'credited', updated_at = ?"
                " WHERE id = ? AND state = 'settled'",
                (tx.created_at.timestamp(), payment_id),
            )
            if cur.rowcount != 1:
                return None
            _log(conn, tx)
            credited = UsageRow(
                subject=wallet_subject(tx.account), period=CREDITS_PERIOD, usd=tx.amount
            )
            return _add_row(conn, credited)

        return self._write(op)

    def settled_payments(self) -> Sequence[Payment]:
        def op(conn: sqlite3.Connection) -> list[Payment]:
            rows = conn.execute(
                f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE state = 'settled' ORDER BY id"
            )
            return [_payment(row) for row in rows]

        return self._run(op)

    def export(self, now: datetime) -> Generator[StateRecord, None, None]:
        """Every item of the state, from one snapshot: the keys (tombstones too) and the
        usage rows in change order, the wallets, the transactions log in the order it
        was written, the payments, and the nonces not expired at ``now``.

        A connection of its own, so writes by this store or any other process go on
        meanwhile (and are not seen); it is closed when the iterator ends or is closed.
        """
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=_BUSY_S)
        except sqlite3.Error as exc:
            raise ServiceUnavailable("state store unavailable") from exc
        try:
            conn.execute("BEGIN")  # the first SELECT fixes the snapshot for all of them
            yield from _export(conn, now)
        except sqlite3.Error as exc:
            raise ServiceUnavailable("state store unavailable") from exc
        finally:
            conn.close()

    def _write(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """``op`` in one ``BEGIN IMMEDIATE`` transaction: committed (and on disk) when this
        returns; rolled back when ``op`` raises, whatever it raises."""

        def tx(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._run(tx)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _export(conn: sqlite3.Connection, now: datetime) -> Iterator[StateRecord]:
    for row in conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY seq"):
        yield _change(row)
    for row in conn.execute(f"SELECT {_USAGE_COLUMNS} FROM usage ORDER BY seq"):
        yield _usage_row(row)
    for wallet_id, account, created in conn.execute(
        "SELECT id, account, created_at FROM wallets ORDER BY rowid"
    ):
        yield WalletAccount(
            id=wallet_id, account=account, created_at=datetime.fromtimestamp(created, UTC)
        )
    for row in conn.execute(f"SELECT {_TX_COLUMNS} FROM transactions ORDER BY rowid"):
        yield _transaction(row)
    for row in conn.execute(f"SELECT {_PAYMENT_COLUMNS} FROM payments ORDER BY id"):
        yield _payment(row)
    nonces = conn.execute(
        "SELECT nonce, expires_at FROM siwx_nonces WHERE expires_at > ? ORDER BY nonce",
        (now.timestamp(),),
    )
    for nonce, expires in nonces:
        yield NonceRecord(nonce=nonce, expires_at=datetime.fromtimestamp(expires, UTC))


def _add_row(conn: sqlite3.Connection, d: UsageRow) -> UsageRow:
    """Add the delta ``d`` to its row (created at zero), under the next change number."""
    row = conn.execute(
        f"INSERT INTO usage ({_USAGE_COLUMNS}) VALUES (?, ?, {_NEXT_USAGE_SEQ},"
        " ?, ?, ?, ?, ?) ON CONFLICT (subject, period) DO UPDATE SET"
        f" seq = {_NEXT_USAGE_SEQ}, usd = usd + excluded.usd,"
        " input_tokens = input_tokens + excluded.input_tokens,"
        " output_tokens = output_tokens + excluded.output_tokens,"
        " cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,"
        f" requests = requests + excluded.requests RETURNING {_USAGE_COLUMNS}",
        (
            d.subject,
            d.period,
            d.usd,
            d.input_tokens,
            d.output_tokens,
            d.cached_input_tokens,
            d.requests,
        ),
    ).fetchone()
    return _usage_row(row)


def _log(conn: sqlite3.Connection, tx: Transaction) -> bool:
    """Write ``tx`` to the transactions log; False when its id was there already."""
    cur = conn.execute(
        f"INSERT INTO transactions ({_TX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (
            tx.id,
            tx.account,
            tx.type,
            tx.amount,
            tx.description,
            tx.request_id,
            tx.transaction,
            tx.network,
            tx.created_at.timestamp(),
        ),
    )
    return cur.rowcount == 1


def _payment(row: tuple[Any, ...]) -> Payment:
    payment_id, state, account, network, usd, tx_hash, request_id, created = row
    return Payment(
        id=payment_id,
        state=state,
        account=account,
        network=network,
        usd=usd,
        transaction=tx_hash,
        request_id=request_id,
        created_at=datetime.fromtimestamp(created, UTC),
    )


def _transaction(row: tuple[Any, ...]) -> Transaction:
    tx_id, account, kind, amount, description, request_id, tx_hash, network, created = row
    return Transaction(
        id=tx_id,
        account=account,
        type=kind,
        amount=amount,
        description=description,
        request_id=request_id,
        transaction=tx_hash,
        network=network,
        created_at=datetime.fromtimestamp(created, UTC),
    )


def _usage_row(row: tuple[Any, ...]) -> UsageRow:
    subject, period, seq, usd, input_tokens, output_tokens, cached, requests = row
    return UsageRow(
        subject=subject,
        period=period,
        seq=seq,
        usd=usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        requests=requests,
    )


def _key_values(e: KeyEntry) -> tuple[object, ...]:
    """The columns after ``hash`` and ``deleted``, in _KEY_COLUMNS order, for ``e``."""
    return (
        e.id,
        e.tenant,
        e.type,
        e.name,
        json.dumps(list(e.allowed_providers)),
        json.dumps(list(e.allowed_models)),
        e.limit,
        e.limit_reset,
        e.rpm_limit,
        e.rpd_limit,
        e.tpm_limit,
        None if e.expires_at is None else e.expires_at.timestamp(),
        int(e.disabled),
        _seconds(e.created_at),
        _seconds(e.updated_at),
        e.created_by,
    )


def _seconds(moment: datetime | None) -> float:
    if moment is None:
        raise ValueError("a stored key has created_at and updated_at")
    return moment.timestamp()


def _read_key(conn: sqlite3.Connection, digest: bytes) -> KeyChange:
    row = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE hash = ?", (digest.hex(),)
    ).fetchone()
    return KeyChange(0, digest, None) if row is None else _change(row)


def _change(row: tuple[Any, ...]) -> KeyChange:
    (seq, hexdigest, deleted, kid, tenant, key_type, name, providers, models) = row[:9]
    (limit, reset, rpm, rpd, tpm, expires, disabled, created, updated, by) = row[9:]
    digest = bytes.fromhex(hexdigest)
    if deleted:
        return KeyChange(seq, digest, None)
    entry = KeyEntry(
        id=kid,
        tenant=tenant,
        type=key_type,
        digest=digest,
        name=name,
        allowed_providers=tuple(json.loads(providers)),
        allowed_models=tuple(json.loads(models)),
        limit=limit,
        limit_reset=reset,
        rpm_limit=rpm,
        rpd_limit=rpd,
        tpm_limit=tpm,
        expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
        disabled=bool(disabled),
        source="store",
        created_at=datetime.fromtimestamp(created, UTC),
        updated_at=datetime.fromtimestamp(updated, UTC),
        created_by=by,
    )
    return KeyChange(seq, digest, entry)


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(_MIGRATIONS):
        raise sqlite3.OperationalError(f"database schema version {version} is newer than aroutd")
    for target, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        # executescript commits first; BEGIN ... COMMIT makes each step all or nothing.
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;")
