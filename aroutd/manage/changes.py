"""The key a management request makes (SPEC §7): a new stored key, or a patched one.

Both check the request against the tenant's scope first (:mod:`aroutd.manage.narrowing`):
only the fields a request sets are checked, so a key can still be renamed or disabled
after its tenant was narrowed (its requests are held to the tenant's scope anyway,
which is always applied on top of the key's). Omitted lists are empty: the tenant's.
Pure: checked fields and ``now`` in, a :class:`KeyEntry` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from aroutd.keytable.table import LIMIT_FIELDS, KeyEntry, Tenant
from aroutd.manage.narrowing import check_narrowing

__all__ = ["changed_fields", "new_key_entry", "patched_entry", "store_key_id"]

_FIELDS = (
    "name",
    "disabled",
    "allowed_providers",
    "allowed_models",
    "limit",
    "limit_reset",
    "rpm_limit",
    "rpd_limit",
    "tpm_limit",
    "expires_at",
)


def store_key_id(digest: bytes) -> str:
    """The id of a stored key in logs, metrics and X-ARouter-Key-Id: its hash's start."""
    return f"api-{digest.hex()[:16]}"


def _check(tenant: Tenant, fields: Mapping[str, Any], current: KeyEntry | None = None) -> None:
    """Forbidden unless the fields set stay within the tenant. A patch that sets either
    list is checked with both lists as they will be (each depends on the other below)."""
    lists = ("allowed_providers", "allowed_models")
    kept = current is not None and any(name in fields for name in lists)
    providers = fields.get(lists[0], current.allowed_providers if kept and current else ())
    models = fields.get(lists[1], current.allowed_models if kept and current else ())
    check_narrowing(
        tenant_providers=tenant.allowed_providers,
        tenant_models=tenant.allowed_models,
        tenant_limits=tenant.limits(),
        providers=providers,
        models=_per_provider(models, providers or tenant.allowed_providers),
        limits={name: fields[name] for name in LIMIT_FIELDS if name in fields},
    )


def _per_provider(models: tuple[str, ...], providers: tuple[str, ...]) -> tuple[str, ...]:
    """A bare glob (no ``/``) matches that model name under any provider. When the key's
    providers are known (its own, else its tenant's: both are always enforced) and are
    plain names, it admits exactly ``provider/glob`` for each of them, so that is what
    is checked: ``gpt-4o`` is within ``openai/gpt-4o*`` for an openai-only key."""
    if not providers or any(c in p for p in providers for c in "*?[/"):
        return models
    return tuple(
        qualified
        for model in models
        for qualified in ((model,) if "/" in model else (f"{p}/{model}" for p in providers))
    )


def new_key_entry(
    fields: Mapping[str, Any], *, tenant: Tenant, digest: bytes, created_by: str, now: datetime
) -> KeyEntry:
    """The stored API key a create request makes, or Forbidden when it exceeds the tenant."""
    _check(tenant, fields)
    return KeyEntry(
        id=store_key_id(digest),
        tenant=tenant.id,
        type="api",
        digest=digest,
        source="store",
        created_at=now,
        updated_at=now,
        created_by=created_by,
        **{name: fields[name] for name in _FIELDS if name in fields},
    )


def patched_entry(
    entry: KeyEntry, fields: Mapping[str, Any], *, tenant: Tenant, now: datetime
) -> KeyEntry:
    """``entry`` with a patch request's fields, or Forbidden when they exceed the tenant."""
    _check(tenant, fields, entry)
    return replace(entry, updated_at=now, **{n: fields[n] for n in _FIELDS if n in fields})


def changed_fields(old: KeyEntry, new: KeyEntry) -> list[str]:
    """The names of the fields whose value differs (for the change's log line)."""
    return [name for name in _FIELDS if getattr(old, name) != getattr(new, name)]
