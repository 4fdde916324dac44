"""Runtime.key_principal: cached per key table, and a swapped table takes effect at once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from aroutd.keytable.table import parse_keytable
from aroutd.shell.runtime import Runtime
from aroutd.store.sqlite import SqliteStore

from .support import Keys, make_config

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _table(tmp: Path, key: str, extra: str = ""):  # type: ignore[no-untyped-def]
    digest = hashlib.sha256(key.encode()).hexdigest()
    text = f'[tenants.t]\n\n[[keys]]\nid = "k"\ntenant = "t"\nsha256 = "{digest}"\n{extra}'
    return parse_keytable(text, path=tmp / "keys.toml")


def test_cache_follows_the_table(tmp_path: Path) -> None:
    key = Keys().api
    digest = hashlib.sha256(key.encode()).digest()
    rt = Runtime.build(
        make_config(tmp_path, 9, Keys()),
        _table(tmp_path, key),
        SqliteStore.open(tmp_path / "s.db"),
        None,
    )
    first = rt.key_principal(digest, "api", "bearer", NOW)
    assert first is not None and first.key_id == "k"
    assert rt.key_principal(digest, "api", "bearer", NOW) is first  # cached
    assert rt.key_principal(digest, "management", "bearer", NOW) is None  # wrong kind
    other = rt.key_principal(digest, "api", "x-api-key", NOW)
    assert other is not None and other.method == "x-api-key"

    rt.keytable = _table(tmp_path, key, "disabled = true\n")  # what a SIGHUP does
    assert rt.key_principal(digest, "api", "bearer", NOW) is None

    rt.keytable = _table(tmp_path, key, "expires_at = 2026-05-01T00:00:00Z\n")
    assert rt.key_principal(digest, "api", "bearer", NOW) is None
    assert rt.key_principal(digest, "api", "bearer", datetime(2026, 4, 1, tzinfo=UTC)) is not None
