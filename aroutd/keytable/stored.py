"""The keys of the state store, held in memory (SPEC §7): what the proxy path looks up.

A request never waits on the store. The daemon loads every stored key at start and
then applies each :class:`~aroutd.store.base.KeyChange` it learns of: the answer of its
own write (before that answer is sent, so the very next request sees it) and what the
store's change sequence shows of other instances' and the command line's writes.

A change applies only when it is newer than what is held for that key, so a poll that
read an older state while a newer write was being answered can never undo it.
Pure: changes in, lookups out.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aroutd.keytable.table import KeyEntry
from aroutd.store.base import KeyChange

__all__ = ["StoredKeys"]


class StoredKeys:
    """digest -> the stored key, with each tenant's keys at hand for listing."""

    __slots__ = ("_by_digest", "_by_tenant", "_seq", "cursor")

    def __init__(self) -> None:
        self._by_digest: dict[bytes, KeyEntry] = {}
        self._by_tenant: dict[str, dict[bytes, KeyEntry]] = {}
        self._seq: dict[bytes, int] = {}  # the change number held for each digest seen
        self.cursor = 0  # the highest change number applied

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"<{len(self._by_digest)} stored keys, change {self.cursor}>"

    def apply(self, changes: Iterable[KeyChange]) -> list[bytes]:
        """Apply what is newer than held; the digests whose key changed."""
        changed = []
        for change in changes:
            digest = change.digest
            self.cursor = max(self.cursor, change.seq)
            if self._seq.get(digest, 0) >= change.seq:
                continue
            self._seq[digest] = change.seq
            old = self._by_digest.pop(digest, None)
            if old is not None:
                tenant_keys = self._by_tenant[old.tenant]
                del tenant_keys[digest]
                if not tenant_keys:
                    del self._by_tenant[old.tenant]
            if change.entry is not None:
                self._by_digest[digest] = change.entry
                self._by_tenant.setdefault(change.entry.tenant, {})[digest] = change.entry
            changed.append(digest)
        return changed

    def lookup(self, digest: bytes) -> KeyEntry | None:
        """The stored key whose digest equals ``digest``, compared in constant time."""
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry

    def of_tenant(self, tenant: str) -> list[KeyEntry]:
        """The tenant's stored keys, oldest first (ties by hash): a stable listing order."""
        keys = self._by_tenant.get(tenant, {}).values()
        return sorted(keys, key=lambda e: (e.created_at, e.digest))

    def tenants(self) -> list[str]:
        """The tenants that hold stored keys, sorted."""
        return sorted(self._by_tenant)

    def count(self, tenant: str) -> int:
        return len(self._by_tenant.get(tenant, ()))

    def digests(self) -> Iterable[bytes]:
        return self._by_digest.keys()
