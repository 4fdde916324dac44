"""Other writers' key changes, followed (SPEC §7, §14): several instances on one state
file (``aroutd@.service`` with ``reuse_port``) and ``aroutd keys`` at the host.

Every ``POLL_INTERVAL_S`` a worker thread asks the store for the changes after the
last change number this daemon holds (one indexed query, nothing when nothing
changed) and the event loop applies them: a key created, changed or deleted anywhere
takes effect here within a second. A store that fails is logged once per outage and
asked again, less often each time (up to every 2 s); serving never waits for it, and
known keys keep working from memory.
"""

from __future__ import annotations

import trio

from aroutd.errors import ServiceUnavailable
from aroutd.shell import logsink
from aroutd.shell.runtime import Runtime

__all__ = ["POLL_INTERVAL_S", "follow_key_changes", "load_store_keys"]

POLL_INTERVAL_S = 0.25
MAX_BACKOFF_S = 2.0


async def load_store_keys(rt: Runtime) -> None:
    """Every stored key, at start (in a worker thread: there may be many)."""
    changes = await trio.to_thread.run_sync(rt.store.key_changes, 0)
    rt.apply_key_changes(changes)
    rt.log_conflicts()


async def follow_key_changes(rt: Runtime, interval_s: float = POLL_INTERVAL_S) -> None:
    failing = False
    delay = interval_s
    while True:
        await trio.sleep(delay)
        try:
            changes = await trio.to_thread.run_sync(rt.store.key_changes, rt.store_keys.cursor)
        except ServiceUnavailable as exc:
            if not failing:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "?"
                logsink.event("key_sync_error", error=cause)
            failing, rt.store_ok = True, False
            delay = min(delay * 2, MAX_BACKOFF_S)  # a store that is away is asked less often
            continue
        delay, rt.store_ok = interval_s, True
        if failing:
            logsink.event("key_sync_resumed")
            failing = False
        if changes:
            rt.apply_key_changes(changes)
