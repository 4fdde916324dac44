"""Other writers' key changes, followed (SPEC §7, §14): several instances on one state
file (``aroutd@.service`` with ``reuse_port``) and ``aroutd keys`` at the host.

Every ``POLL_INTERVAL_S`` a worker thread asks the store for the changes after the
last change number this daemon holds (one indexed query, nothing when nothing
changed) and the event loop applies them: a key created, changed or deleted anywhere
takes effect here within a second. A store that fails is logged once per outage and
asked again at the next tick; serving never waits for it.
"""

from __future__ import annotations

import trio

from aroutd.errors import ServiceUnavailable
from aroutd.shell import logsink
from aroutd.shell.runtime import Runtime

__all__ = ["POLL_INTERVAL_S", "follow_key_changes", "load_store_keys"]

POLL_INTERVAL_S = 0.25


async def load_store_keys(rt: Runtime) -> None:
    """Every stored key, at start (in a worker thread: there may be many)."""
    changes = await trio.to_thread.run_sync(rt.store.key_changes, 0)
    rt.apply_key_changes(changes)
    rt.log_conflicts()


async def follow_key_changes(rt: Runtime, interval_s: float = POLL_INTERVAL_S) -> None:
    failing = False
    while True:
        await trio.sleep(interval_s)
        try:
            changes = await trio.to_thread.run_sync(rt.store.key_changes, rt.store_keys.cursor)
        except ServiceUnavailable as exc:
            if not failing:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "?"
                logsink.event("key_sync_error", error=cause)
            failing = True
            continue
        if failing:
            logsink.event("key_sync_resumed")
            failing = False
        if changes:
            rt.apply_key_changes(changes)
