"""``aroutd state migrate [--config PATH] --to URL`` (SPEC §1, §14): the sqlite state of
a config copied into a Redis, to move a deployment to the shared store.

What is copied is one snapshot of the file at ``[state] path`` (whatever the config's
``backend``): keys with their tombstones, usage totals, wallets, the transactions log,
x402 payments in every state and the sign-in nonces not yet expired. Redis then holds
sqlite's version of every item copied (:mod:`aroutd.store.redis_import` has the rules):
a second run writes nothing, items only Redis has are left alone.

A daemon may keep serving on the file meanwhile (the snapshot stays consistent), but what
it writes after the snapshot is not carried over: stop the sqlite instances, migrate,
then start them on Redis. Logged as a ``state_migrated`` event with the counts.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aroutd.errors import ConfigError
from aroutd.shell import logsink
from aroutd.shell.files import load_config
from aroutd.store.redis import RedisStore, redact_url
from aroutd.store.sqlite import SqliteStore

__all__ = ["migrate_state"]

SCHEMES = ("redis", "rediss", "unix")


def migrate_state(config_path: Path, to_url: str) -> list[str]:
    """Copy the config's sqlite state into the Redis at ``to_url``; what to print."""
    shown = redact_url(to_url)
    if urlsplit(to_url).scheme not in SCHEMES:
        # not shown: what is not a URL may be anything, a password too
        raise ConfigError(["--to: not a redis://, rediss:// or unix:// URL"])
    cfg = load_config(config_path)
    path = cfg.state.path
    if not path.is_file():  # opening it would create an empty database
        raise ConfigError([f"{path}: no state database to migrate"])
    source = SqliteStore.open(path)
    try:
        target = RedisStore.open(to_url)
        try:
            now = datetime.now(UTC)
            with closing(source.export(now)) as records:
                counts = target.import_records(records, now)
        finally:
            target.close()
    finally:
        source.close()
    fields: dict[str, Any] = {c.kind: c.copied for c in counts}
    written = sum(c.written for c in counts)
    logsink.event("state_migrated", source=str(path), to=shown, written=written, **fields)
    return [f"copied {path} to {shown}"] + [
        f"{c.kind}: {c.copied} copied, {c.written} written, {c.copied - c.written} unchanged"
        for c in counts
    ]
