"""The management API (SPEC §7) and the current-key endpoint, served.

Each request is answered from pure steps (:mod:`aroutd.manage`) and one store call:

- reads (list, get, ``GET /v1/key``) come from memory: the key table and the stored
  keys the runtime holds, never the store;
- a write runs in a worker thread inside one store transaction, is on disk when the
  thread returns, and is applied to the runtime's keys before the answer is sent, so
  the very next request sees it; other instances see it through the change poller
  (:mod:`aroutd.shell.keysync`) within a second.

Every change is one ``key_change`` log line: the management key's id, the action, the
hash and the names of the fields it changed; never a key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import h11
import trio

from aroutd.admission import Admitted
from aroutd.errors import Conflict, Forbidden, MethodNotAllowed, NotFound
from aroutd.keytable.keys import key_digest, new_key
from aroutd.keytable.table import KeyEntry, Tenant
from aroutd.manage.changes import changed_fields, new_key_entry, patched_entry
from aroutd.manage.requests import (
    CREATE_FIELDS,
    PATCH_FIELDS,
    key_hash,
    parse_body,
    parse_list_query,
)
from aroutd.manage.views import key_object, self_object
from aroutd.principal import Principal
from aroutd.shell import logsink
from aroutd.shell.connection import ClientConnection
from aroutd.shell.runtime import Runtime
from aroutd.store.base import KeyChange
from aroutd.usage.book import key_subject

__all__ = ["MAX_BODY_BYTES", "MAX_KEYS_PER_TENANT", "current_key", "management"]

MAX_BODY_BYTES = 65536  # a management request body; beyond: 413
MAX_KEYS_PER_TENANT = 100_000  # stored keys: all of them are held in every instance's memory
MSG_NO_KEY = "key not found"
MSG_FILE_KEY = "key is defined in the key table file"
MSG_TOO_MANY = "tenant has too many keys"
_READS = (b"GET", b"HEAD")

Answer = tuple[int, Any]  # status, JSON value


async def current_key(rt: Runtime, method: bytes, principal: Principal) -> Answer:
    """``GET /v1/key``, ``GET /api/v1/key``: the presented key, as ARouter shows it."""
    if method not in _READS:
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "GET, HEAD")])
    entry = _own_key(rt, principal)
    spent = rt.usage.spent(key_subject(entry.digest.hex()), datetime.now(UTC))
    return 200, {"data": self_object(entry, spent)}


def _shown(rt: Runtime, entry: KeyEntry) -> dict[str, Any]:
    """``Key`` with what the key has spent so far."""
    spent = rt.usage.spent(key_subject(entry.digest.hex()), datetime.now(UTC))
    return key_object(entry, spent)


def _own_key(rt: Runtime, principal: Principal) -> KeyEntry:
    entry = None if principal.key_hash is None else rt.find_key(bytes.fromhex(principal.key_hash))
    if entry is None:  # deleted between authentication and now
        raise NotFound(MSG_NO_KEY)
    return entry


async def management(
    rt: Runtime, client: ClientConnection, req: h11.Request, head: Admitted, principal: Principal
) -> Answer:
    """``/api/v1/keys`` and ``/api/v1/keys/{hash}`` for a management key's own tenant."""
    tenant = rt.keytable.tenants.get(principal.tenant)
    if tenant is None:  # the tenant left the key table since authentication
        raise NotFound(MSG_NO_KEY)
    path, method = head.target.path, req.method
    if path == "/api/v1/keys":
        if method in _READS:
            return 200, {"data": await _list(rt, tenant, head.target.query)}
        if method == b"POST":
            return await _create(rt, client, tenant, principal)
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "GET, HEAD, POST")])
    rest = path.removeprefix("/api/v1/keys/")
    digest = key_hash(rest) if "/" not in rest else None
    if method not in (*_READS, b"PATCH", b"DELETE"):
        allow = "GET, HEAD, PATCH, DELETE"
        raise MethodNotAllowed("method not allowed", headers=[("Allow", allow)])
    if digest is None:
        raise NotFound(MSG_NO_KEY)
    file_entry = rt.keytable.lookup(digest)
    if file_entry is not None and file_entry.tenant == tenant.id:
        if method in _READS:
            return 200, {"data": _shown(rt, file_entry)}
        raise Conflict(MSG_FILE_KEY)
    if file_entry is not None:  # another tenant's: as if unknown
        raise NotFound(MSG_NO_KEY)
    if method in _READS:
        entry = rt.store_keys.lookup(digest)
        if entry is None or entry.tenant != tenant.id:
            raise NotFound(MSG_NO_KEY)
        return 200, {"data": _shown(rt, entry)}
    if method == b"DELETE":
        await _delete(rt, digest, tenant, principal)
        return 200, {"data": {"deleted": True}}
    return await _patch(rt, client, digest, tenant, principal)


async def _list(rt: Runtime, tenant: Tenant, query: bytes) -> list[dict[str, Any]]:
    """The tenant's API keys, the key table's first (file order), then the store's
    (oldest first); disabled ones only when asked."""
    q = parse_list_query(query)
    table = rt.keytable
    digests = await rt.file_keys_of(tenant.id)
    shown: list[KeyEntry] = []
    wanted = q.offset + q.page_size
    for entry in _entries(table.lookup, digests, rt.store_keys.of_tenant(tenant.id)):
        if entry.disabled and not q.include_disabled:
            continue
        shown.append(entry)
        if len(shown) >= wanted:
            break
    return [_shown(rt, e) for e in shown[q.offset :]]


def _entries(
    lookup: Callable[[bytes], KeyEntry | None], digests: list[bytes], stored: list[KeyEntry]
) -> Iterator[KeyEntry]:
    for digest in digests:
        entry = lookup(digest)
        if entry is not None:
            yield entry
    for entry in stored:
        if lookup(entry.digest) is None:  # a hash the file also holds is the file's
            yield entry


async def _read_body(rt: Runtime, client: ClientConnection) -> bytes:
    limit = min(MAX_BODY_BYTES, rt.config.server.max_body_bytes)
    return await client.read_body(limit, stall_timeout_s=rt.config.server.body_timeout_s)


async def _create(
    rt: Runtime, client: ClientConnection, tenant: Tenant, principal: Principal
) -> Answer:
    body = await _read_body(rt, client)
    now = datetime.now(UTC)
    fields = parse_body(body, allowed=CREATE_FIELDS, now=now, create=True)
    if rt.store_keys.count(tenant.id) >= MAX_KEYS_PER_TENANT:
        raise Forbidden(MSG_TOO_MANY)
    key = new_key("api")
    digest = key_digest(key)
    entry = new_key_entry(
        fields, tenant=tenant, digest=digest, created_by=_actor(principal), now=now
    )
    change = await trio.to_thread.run_sync(rt.store.create_key, entry)
    _applied(rt, change, principal, "create", sorted(fields))
    return 201, {"data": key_object(entry), "key": key}


async def _patch(
    rt: Runtime, client: ClientConnection, digest: bytes, tenant: Tenant, principal: Principal
) -> Answer:
    body = await _read_body(rt, client)
    now = datetime.now(UTC)
    fields = parse_body(body, allowed=PATCH_FIELDS, now=now)
    changed: list[str] = []

    def change(current: KeyEntry) -> KeyEntry:
        new = patched_entry(current, fields, tenant=tenant, now=now)
        changed.extend(changed_fields(current, new))
        return new

    result = await trio.to_thread.run_sync(rt.store.update_key, digest, tenant.id, change)
    if result is None or result.entry is None:
        raise NotFound(MSG_NO_KEY)
    _applied(rt, result, principal, "update", changed)
    return 200, {"data": _shown(rt, result.entry)}


async def _delete(rt: Runtime, digest: bytes, tenant: Tenant, principal: Principal) -> None:
    # Writes ask the store, not memory: a key another instance made a moment ago is
    # already there.
    result = await trio.to_thread.run_sync(rt.store.delete_key, digest, tenant.id)
    if result is None:
        raise NotFound(MSG_NO_KEY)
    _applied(rt, result, principal, "delete", [])


def _actor(principal: Principal) -> str:
    return principal.key_id or "?"


def _applied(
    rt: Runtime, change: KeyChange, principal: Principal, action: str, fields: list[str]
) -> None:
    rt.apply_key_changes([change])
    logsink.event(
        "key_change",
        action=action,
        by=_actor(principal),
        tenant=principal.tenant,
        hash=change.digest.hex(),
        fields=fields,
    )
