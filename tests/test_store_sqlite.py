"""aroutd.store.sqlite: nonces and wallet accounts, durable across close, reopen and kill -9."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.store.base import StateStore, WalletAccount
from aroutd.store.sqlite import SCHEMA_VERSION, SqliteStore

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ACCOUNT = "eip155:8453:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "aroutd.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore.open(db)
    yield s
    s.close()


def test_is_a_state_store(store: SqliteStore) -> None:
    checked: StateStore = store  # mypy checks the protocol; this checks the import
    assert checked is store


def test_nonce_is_single_use(store: SqliteStore) -> None:
    assert store.use_nonce("a1b2c3d4e5f6", LATER, NOW) is True
    assert store.use_nonce("a1b2c3d4e5f6", LATER, NOW + timedelta(seconds=1)) is False
    assert store.use_nonce("A1B2C3D4E5F6", LATER, NOW) is True  # case matters


def test_nonce_survives_close_and_reopen(db: Path) -> None:
    first = SqliteStore.open(db)
    assert first.use_nonce("persist1234", LATER, NOW) is True
    first.close()
    second = SqliteStore.open(db)
    assert second.use_nonce("persist1234", LATER, NOW) is False
    second.close()


def test_nonce_survives_kill_9(db: Path) -> None:
    """An acknowledged nonce is on disk: the writer dies by SIGKILL right after True."""
    script = (
        "import os, signal, sys\n"
        "from datetime import datetime, timezone, timedelta\n"
        "from pathlib import Path\n"
        "from aroutd.store.sqlite import SqliteStore\n"
        "now = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)\n"
        "s = SqliteStore.open(Path(sys.argv[1]))\n"
        "assert s.use_nonce('killed9nonce', now + timedelta(minutes=5), now)\n"
        "s.ensure_wallet('solana:x:y', now)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db)],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    reopened = SqliteStore.open(db)
    assert reopened.use_nonce("killed9nonce", LATER, NOW) is False
    assert reopened.ensure_wallet("solana:x:y", LATER).created_at == NOW
    reopened.close()


def test_expired_nonce_is_taken_over_and_purged(store: SqliteStore, db: Path) -> None:
    assert store.use_nonce("oldnonce1", NOW + timedelta(seconds=10), NOW) is True
    assert store.use_nonce("othernonce", NOW + timedelta(seconds=10), NOW) is True
    # After its message can no longer verify, the nonce is forgotten.
    assert store.use_nonce("oldnonce1", LATER + timedelta(minutes=5), LATER) is True
    assert store.use_nonce("oldnonce1", LATER + timedelta(minutes=5), LATER) is False
    rows = sqlite3.connect(db).execute("SELECT nonce FROM siwx_nonces ORDER BY nonce").fetchall()
    assert rows == [("oldnonce1",)]  # "othernonce" was purged


def test_concurrent_use_of_one_nonce_wins_once(store: SqliteStore) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(store.use_nonce("racenonce1", LATER, NOW))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_ensure_wallet_creates_once(store: SqliteStore, db: Path) -> None:
    wallet = store.ensure_wallet(ACCOUNT, NOW)
    assert wallet.account == ACCOUNT
    assert wallet.created_at == NOW
    assert wallet.id.startswith("wa_")
    assert len(wallet.id) == 19
    assert store.ensure_wallet(ACCOUNT, LATER) == wallet
    other = store.ensure_wallet("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:9C6h", NOW)
    assert other.id != wallet.id
    store.close()
    reopened = SqliteStore.open(db)
    assert reopened.ensure_wallet(ACCOUNT, LATER) == WalletAccount(
        id=wallet.id, account=ACCOUNT, created_at=NOW
    )
    reopened.close()


def test_two_processes_agree_on_a_wallet(db: Path) -> None:
    a, b = SqliteStore.open(db), SqliteStore.open(db)
    assert a.ensure_wallet(ACCOUNT, NOW) == b.ensure_wallet(ACCOUNT, LATER)
    a.close()
    b.close()


def test_files_modes_and_pragmas(store: SqliteStore, db: Path) -> None:
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_reopen_keeps_schema(db: Path) -> None:
    SqliteStore.open(db).close()
    SqliteStore.open(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_newer_schema_is_refused(db: Path) -> None:
    SqliteStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError) as info:
        SqliteStore.open(db)
    assert info.value.problems == (
        f"{db}: cannot open the state database (database schema version 99 is newer than aroutd)",
    )


def test_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot open the state database"):
        SqliteStore.open(tmp_path / "file" / "aroutd.db")


def test_not_a_database_is_a_config_error(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot open the state database"):
        SqliteStore.open(db)


def test_errors_while_serving_are_503(store: SqliteStore) -> None:
    store._conn.execute("DROP TABLE siwx_nonces")
    with pytest.raises(ServiceUnavailable) as info:
        store.use_nonce("abcdefgh", LATER, NOW)
    assert (info.value.status, info.value.message) == (503, "state store unavailable")
