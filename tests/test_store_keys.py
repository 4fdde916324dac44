"""The sqlite store's keys (SPEC §7) beyond the contract both backends are held to
(tests/test_store_contract.py): the migration of a released file, kill -9.

And aroutd.keytable.stored, the in-memory mirror the proxy path reads.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aroutd.keytable.stored import StoredKeys
from aroutd.keytable.table import KeyEntry
from aroutd.store.base import KeyChange
from aroutd.store.sqlite import SCHEMA_VERSION, SqliteStore

from .test_store_sqlite import db, store

__all__ = ["db", "store"]  # the fixtures, shared with the nonce and wallet tests

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
RELEASED_V1 = ROOT / "tests" / "vectors" / "state-v1.db"  # made by aroutd at 94e8330


def digest(n: int) -> bytes:
    return hashlib.sha256(f"key{n}".encode()).digest()


def entry(n: int, tenant: str = "acme", **fields: object) -> KeyEntry:
    return KeyEntry(
        id=f"api-{n}",
        tenant=tenant,
        type="api",
        digest=digest(n),
        name=f"key {n}",
        source="store",
        created_at=NOW + timedelta(seconds=n),
        updated_at=NOW + timedelta(seconds=n),
        created_by="admin",
        **fields,  # type: ignore[arg-type]
    )


def test_a_released_v1_file_upgrades_in_place(tmp_path: Path) -> None:
    """A database made by the release before keys (schema 1) opens, keeps its nonces
    and wallets, and gains the key table."""
    db = tmp_path / "aroutd.db"
    shutil.copy(RELEASED_V1, db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (1,)
    store = SqliteStore.open(db)
    try:
        assert store.use_nonce("released1234", NOW + timedelta(minutes=5), NOW) is False
        wallet = store.ensure_wallet("eip155:8453:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", NOW)
        assert wallet.id == "wa_5dd083eab44b8a38"
        store.create_key(entry(1))
        assert len(store.key_changes(0)) == 1
    finally:
        store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_an_acknowledged_key_survives_kill_9(db: Path) -> None:
    script = (
        "import os, signal, sys, hashlib\n"
        "from datetime import datetime, timezone\n"
        "from pathlib import Path\n"
        "from aroutd.keytable.table import KeyEntry\n"
        "from aroutd.store.sqlite import SqliteStore\n"
        "now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)\n"
        "s = SqliteStore.open(Path(sys.argv[1]))\n"
        "for n in range(50):\n"
        "    d = hashlib.sha256(f'key{n}'.encode()).digest()\n"
        "    s.create_key(KeyEntry(id=f'api-{n}', tenant='acme', type='api', digest=d,\n"
        "        source='store', created_at=now, updated_at=now))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db)], capture_output=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == -9, proc.stderr.decode()
    reopened = SqliteStore.open(db)
    try:
        assert [c.digest for c in reopened.key_changes(0)] == [digest(n) for n in range(50)]
    finally:
        reopened.close()


# -- the in-memory mirror -----------------------------------------------------------------


def test_the_mirror_applies_only_what_is_newer() -> None:
    held = StoredKeys()
    v1, v2 = entry(1), replace(entry(1), name="v2")
    assert held.apply([KeyChange(5, digest(1), v2)]) == [digest(1)]
    # a poll that read the older state while the newer write was answered changes nothing
    assert held.apply([KeyChange(3, digest(1), v1)]) == []
    assert held.lookup(digest(1)) == v2
    assert held.cursor == 5
    assert held.apply([KeyChange(6, digest(1), None)]) == [digest(1)]
    assert held.lookup(digest(1)) is None
    assert held.apply([KeyChange(5, digest(1), v2)]) == []  # a tombstone stays
    assert len(held) == 0 and held.of_tenant("acme") == []


def test_the_mirror_lists_a_tenants_keys_oldest_first() -> None:
    held = StoredKeys()
    held.apply(
        [
            KeyChange(1, digest(3), entry(3)),
            KeyChange(2, digest(1), entry(1)),
            KeyChange(3, digest(2), entry(2, tenant="beta")),
        ]
    )
    assert [e.id for e in held.of_tenant("acme")] == ["api-1", "api-3"]
    assert [e.id for e in held.of_tenant("beta")] == ["api-2"]
    assert held.count("acme") == 2 and held.count("nobody") == 0
    assert held.tenants() == ["acme", "beta"]
    moved = replace(entry(3), tenant="beta")  # a change may move nothing else along
    held.apply([KeyChange(4, digest(3), moved)])
    assert [e.id for e in held.of_tenant("acme")] == ["api-1"]
    assert held.lookup(digest(9)) is None
