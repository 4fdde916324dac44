"""Key generation and the `aroutd keys` commands' output (SPEC §1, §3).

A key is ``lr_live_`` (API) or ``lr_mgmt_`` (management) followed by 48 lowercase
hex characters (24 random bytes from :mod:`secrets`). Only its SHA-256 is ever
stored: ``keys_new_output`` returns the plaintext key once, for the operator to
hand out, and the ``[[keys]]`` entry with its digest to paste into the key table.
These functions print nothing themselves; ``cli`` prints what they return.
"""

from __future__ import annotations

import hashlib
import secrets

from aroutd.keytable.table import ID_RE

__all__ = [
    "KEY_PREFIXES",
    "key_digest",
    "keys_hash_output",
    "keys_new_output",
    "new_key",
]

KEY_PREFIXES = {"api": "lr_live_", "management": "lr_mgmt_"}
KEY_RANDOM_BYTES = 24


def new_key(key_type: str) -> str:
    """A fresh key of ``key_type`` ("api" or "management")."""
    prefix = KEY_PREFIXES.get(key_type)
    if prefix is None:
        raise ValueError('key type must be "api" or "management"')
    return prefix + secrets.token_hex(KEY_RANDOM_BYTES)


def key_digest(key: str) -> bytes:
    """SHA-256 of the whole key string (UTF-8), as the key table stores it."""
    return hashlib.sha256(key.encode()).digest()


def keys_new_output(
    *, tenant: str, key_type: str, key_id: str | None, tenant_known: bool | None = None
) -> tuple[str, str]:
    """``(plaintext key, [[keys]] TOML entry)`` for ``aroutd keys new``.

    Without ``key_id`` the id is the tenant and the first 8 hex digits of the digest.
    Raises ValueError for a tenant or id the key table would refuse.
    """
    for what, value in (("tenant", tenant), ("key id", key_id)):
        if value is not None and not ID_RE.fullmatch(value):
            raise ValueError(f"{what} must be 1-128 of letters, digits and . _ : @ -")
    if tenant.startswith("wallet:"):
        raise ValueError('tenant must not start with "wallet:"')
    key = new_key(key_type)
    digest = key_digest(key).hex()
    entry_id = key_id if key_id is not None else f"{tenant}-{digest[:8]}"
    entry = _tenant_section(tenant, tenant_known) + (
        "# made by `aroutd keys new`; the key itself is not stored anywhere\n"
        "[[keys]]\n"
        f'id = "{entry_id}"\n'
        f'tenant = "{tenant}"\n'
        f'type = "{key_type}"\n'
        f'sha256 = "{digest}"\n'
    )
    return key, entry


def _tenant_section(tenant: str, known: bool | None) -> str:
    """What to paste for the tenant: nothing when the key table has it, its section when
    it has not (else the key would be refused: unknown tenant), a hint when unknown."""
    if known:
        return ""
    if known is None:
        return (
            f"# the key table needs a [tenants.{tenant}] section (add it unless it has one):\n"
            f"# [tenants.{tenant}]\n\n"
        )
    return f"[tenants.{tenant}]\n\n"


def keys_hash_output(stdin_text: str) -> str:
    """The sha256 hex of the key read on stdin (surrounding newline and blanks removed)."""
    key = stdin_text.strip()
    if not key:
        raise ValueError("no key on stdin")
    return key_digest(key).hex()
