"""The JSON shapes of the management API (SPEC §7), ARouter's field for field.

``Key`` (create, list, get, patch) and the current-key object (``GET /v1/key``).
Times are RFC 3339 UTC to the second. Until usage accounting (§9) counts spend, every
usage figure is 0 and ``limit_remaining`` is the whole ``limit``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aroutd.keytable.table import KeyEntry

__all__ = ["key_object", "rfc3339", "self_object"]


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(entry: KeyEntry) -> dict[str, Any]:
    return {
        "limit": entry.limit,
        "limit_remaining": entry.limit,
        "limit_reset": entry.limit_reset,
        "usage": 0.0,
        "usage_daily": 0.0,
        "usage_weekly": 0.0,
        "usage_monthly": 0.0,
    }


def key_object(entry: KeyEntry) -> dict[str, Any]:
    """The ``Key`` of SPEC §7."""
    return {
        "hash": entry.digest.hex(),
        "name": entry.name,
        "key_type": "regular" if entry.type == "api" else "management",
        "disabled": entry.disabled,
        **_usage(entry),
        "allowed_providers": list(entry.allowed_providers),
        "allowed_models": list(entry.allowed_models),
        "rpm_limit": entry.rpm_limit,
        "rpd_limit": entry.rpd_limit,
        "tpm_limit": entry.tpm_limit,
        "created_at": rfc3339(entry.created_at),
        "updated_at": rfc3339(entry.updated_at),
        "expires_at": rfc3339(entry.expires_at),
    }


def self_object(entry: KeyEntry) -> dict[str, Any]:
    """What ``GET /v1/key`` and ``GET /api/v1/key`` answer about the presented key."""
    return {
        "name": entry.name,
        "label": entry.name,
        **_usage(entry),
        "expires_at": rfc3339(entry.expires_at),
        "is_management_key": entry.type == "management",
    }
