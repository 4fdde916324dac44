"""The embedded state store: one sqlite file on one host (SPEC §2 ``[state]``, §14).

- The folder is created 0700 and the file 0600: it holds account data.
- WAL journal with ``synchronous=FULL``: a write is on disk when its statement returns,
  so an acknowledged nonce or wallet survives kill -9 and power loss.
- One connection shared by the daemon's worker threads (``check_same_thread=False``)
  behind a lock; each write is its own autocommit transaction.
- The schema is versioned with ``PRAGMA user_version``: ``_MIGRATIONS[i]`` moves a file
  from version i to i + 1. Later features (management keys, usage, balances) append.

A database that cannot be opened is a ConfigError (startup fails, naming the file); an
error while serving is 503 ``state store unavailable``, the cause kept in the traceback.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.store.base import WalletAccount

__all__ = ["SqliteStore"]

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
)


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

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(_MIGRATIONS):
        raise sqlite3.OperationalError(f"database schema version {version} is newer than aroutd")
    for target, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        # executescript commits first; BEGIN ... COMMIT makes each step all or nothing.
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;")
