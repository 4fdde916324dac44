"""The JSON shapes of the management API (SPEC §7), ARouter's field for field.

``Key`` (create, list, get, patch) and the current-key object (``GET /v1/key``).
Times are RFC 3339 UTC to the second. Usage figures are USD (§9): lifetime and in the
current UTC day, week (from Monday) and month; ``limit_remaining`` is what is left of
``limit`` in its period (never below 0), null without a limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aroutd.keytable.table import KeyEntry
from aroutd.usage.book import Spent

__all__ = ["key_object", "rfc3339", "self_object"]


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(entry: KeyEntry, spent: Spent) -> dict[str, Any]:
    remaining = None
    if entry.limit is not None:
        remaining = round(max(entry.limit - spent.of(entry.limit_reset), 0.0), 10)
    return {
        "limit": entry.limit,
        "limit_remaining": remaining,
        "limit_reset": entry.limit_reset,
        "usage": round(spent.usage, 10),
        "usage_daily": round(spent.daily, 10),
        "usage_weekly": round(spent.weekly, 10),
        "usage_monthly": round(spent.monthly, 10),
    }


def key_object(entry: KeyEntry, spent: Spent | None = None) -> dict[str, Any]:
    """The ``Key`` of SPEC §7."""
    return {
        "hash": entry.digest.hex(),
        "name": entry.name,
        "key_type": "regular" if entry.type == "api" else "management",
        "disabled": entry.disabled,
        **_usage(entry, spent or Spent()),
        "allowed_providers": list(entry.allowed_providers),
        "allowed_models": list(entry.allowed_models),
        "rpm_limit": entry.rpm_limit,
        "rpd_limit": entry.rpd_limit,
        "tpm_limit": entry.tpm_limit,
        "created_at": rfc3339(entry.created_at),
        "updated_at": rfc3339(entry.updated_at),
        "expires_at": rfc3339(entry.expires_at),
    }


def self_object(entry: KeyEntry, spent: Spent | None = None) -> dict[str, Any]:
    """What ``GET /v1/key`` and ``GET /api/v1/key`` answer about the presented key."""
    return {
        "name": entry.name,
        "label": entry.name,
        **_usage(entry, spent or Spent()),
        "expires_at": rfc3339(entry.expires_at),
        "is_management_key": entry.type == "management",
        "rpm_limit": entry.rpm_limit,
        "rpd_limit": entry.rpd_limit,
        "tpm_limit": entry.tpm_limit,
    }
