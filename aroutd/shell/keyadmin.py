"""``aroutd keys list|disable|enable|delete`` (SPEC §1): the management API's keys, for an
operator at the host without a management key at hand.

The same rules as the API: keys of the key table file are read-only (``key is
defined in the key table file``), an unknown hash is ``key not found``, and each
change is committed to the state store (fsync'd) before the command says so, and
logged as the API logs it (``key_change``, ``by`` = ``cli``). A running daemon on the
same state file sees the change within a second (:mod:`aroutd.shell.keysync`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aroutd.errors import ConfigError
from aroutd.keytable.stored import StoredKeys
from aroutd.keytable.table import KeyEntry
from aroutd.manage.requests import key_hash
from aroutd.manage.views import rfc3339
from aroutd.shell import logsink
from aroutd.shell.files import load_config, load_keytable
from aroutd.shell.management import MSG_FILE_KEY, MSG_NO_KEY
from aroutd.shell.stores import open_store

__all__ = ["KeyCommandError", "change_key", "list_keys"]

HEADER = "HASH\tTENANT\tID\tSTATUS\tCREATED\tNAME"


class KeyCommandError(Exception):
    """What the command says on stderr before exiting 1."""


def list_keys(config_path: Path, tenant: str | None) -> list[str]:
    """One tab-separated line per stored key (a header first), oldest first."""
    cfg = load_config(config_path)
    store = open_store(cfg)
    try:
        held = StoredKeys()
        held.apply(store.key_changes(0))
    finally:
        store.close()
    now = datetime.now(UTC)
    tenants = held.tenants() if tenant is None else [tenant]
    entries = [e for t in tenants for e in held.of_tenant(t)]
    return [HEADER, *(_line(e, now) for e in entries)]


def _line(e: KeyEntry, now: datetime) -> str:
    status = "disabled" if e.disabled else "active" if e.usable(now) else "expired"
    name = e.name.replace("\t", " ").replace("\n", " ")
    return f"{e.digest.hex()}\t{e.tenant}\t{e.id}\t{status}\t{rfc3339(e.created_at)}\t{name}"


def change_key(config_path: Path, hash_text: str, action: str) -> str:
    """``disable``, ``enable`` or ``delete`` the stored key ``hash_text``; what to print."""
    cfg = load_config(config_path)
    digest = key_hash(hash_text)
    if digest is None:
        raise KeyCommandError(f"{MSG_NO_KEY} (a hash is 64 hex digits)")
    try:
        table = load_keytable(cfg.keys.file)
    except ConfigError as exc:
        raise KeyCommandError(f"the key table does not load: {exc.problems[0]}") from None
    if table.lookup(digest) is not None:
        raise KeyCommandError(MSG_FILE_KEY)
    store = open_store(cfg)
    try:
        now = datetime.now(UTC)
        if action == "delete":
            result = store.delete_key(digest, None)
        else:
            off = action == "disable"
            result = store.update_key(
                digest, None, lambda e: replace(e, disabled=off, updated_at=now)
            )
    finally:
        store.close()
    if result is None:
        raise KeyCommandError(MSG_NO_KEY)
    fields = [] if action == "delete" else ["disabled"]
    tenant = result.entry.tenant if result.entry is not None else None
    logsink.event(
        "key_change", action=action, by="cli", tenant=tenant, hash=digest.hex(), fields=fields
    )
    return f"{action}d {digest.hex()}"  # disabled, enabled, deleted
