"""The usage book and the store, kept in step (SPEC §9 durability, §14).

- At start, every usage row is loaded (a worker thread).
- Every ``COMMIT_INTERVAL_S`` (50 ms) what finished responses added is committed to
  the store in one transaction (fsync'd): usage is durable within 100 ms of a
  response's end, and no request ever waits for the disk. A commit that fails is kept
  and tried again at the next tick (logged once per outage).
- Every ``POLL_INTERVAL_S`` the rows other instances changed are read, so several
  instances on one state file add up.
- At exit, after the drain, what is left is committed (:func:`final_commit`).

A commit runs shielded from cancellation: a batch the store took is always marked
committed in memory, never counted twice or lost.
"""

from __future__ import annotations

import trio

from aroutd.errors import ServiceUnavailable
from aroutd.shell import logsink
from aroutd.shell.runtime import Runtime

__all__ = [
    "COMMIT_INTERVAL_S",
    "POLL_INTERVAL_S",
    "final_commit",
    "load_usage",
    "sync_usage",
]

COMMIT_INTERVAL_S = 0.05
MAX_BACKOFF_S = 2.0
POLL_INTERVAL_S = 0.5
FINAL_COMMIT_TIMEOUT_S = 10.0


async def load_usage(rt: Runtime) -> None:
    rt.usage.apply(await trio.to_thread.run_sync(rt.store.usage_changes, 0))


async def _commit(rt: Runtime) -> bool:
    """Commit what is pending; False when the store failed (kept for the next try)."""
    with trio.CancelScope(shield=True):
        batch = rt.usage.take()
        try:
            debits = rt.usage.debits_in_flight()
            rows = await trio.to_thread.run_sync(rt.store.add_usage, batch, debits)
        except ServiceUnavailable:
            rt.usage.restore()
            return False
        rt.usage.committed(rows)
    return True


async def sync_usage(rt: Runtime) -> None:
    failing = False
    delay = COMMIT_INTERVAL_S
    next_poll = trio.current_time() + POLL_INTERVAL_S
    while True:
        await trio.sleep(delay)
        ok = True
        if rt.usage.has_pending():
            ok = await _commit(rt)
        if ok and trio.current_time() >= next_poll:
            next_poll = trio.current_time() + POLL_INTERVAL_S
            try:
                rt.usage.apply(
                    await trio.to_thread.run_sync(rt.store.usage_changes, rt.usage.cursor)
                )
            except ServiceUnavailable:
                ok = False
        if not ok and not failing:
            logsink.event("usage_sync_error")
        elif ok and failing:
            logsink.event("usage_sync_resumed")
        failing, rt.store_ok = not ok, ok
        # a store that is away is tried less often (up to every 2 s); what was added
        # meanwhile waits in memory (aroutd_usage_pending_rows) and goes at the next try
        delay = COMMIT_INTERVAL_S if ok else min(delay * 2, MAX_BACKOFF_S)


async def final_commit(rt: Runtime) -> None:
    """After the drain: commit what is left (shielded, bounded in time)."""
    with trio.CancelScope(shield=True), trio.move_on_after(FINAL_COMMIT_TIMEOUT_S):
        while rt.usage.has_pending():
            if not await _commit(rt):
                logsink.event("usage_lost_at_exit")
                return
