"""Who a request is from, once authenticated: the value every later rule takes.

A principal is made by the authentication step (API key, management key or wallet
JWT) and read by policy, forwarding, the management API and usage accounting.
Its scope is a tuple of :class:`Scope`; a request is allowed only when every
scope allows it, which is exactly "tenant scope ∩ key scope" (SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aroutd.ratelimit.values import Limits

__all__ = ["AuthMethod", "Principal", "PrincipalKind", "Scope"]

PrincipalKind = Literal["api", "management", "wallet"]
# How the credential was presented, for logs and metrics (SPEC §11).
# "x402": no credential, a payment (SPEC §10) names the wallet.
AuthMethod = Literal["bearer", "x-api-key", "x-goog-api-key", "query", "websocket", "x402"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """One layer of restrictions; empty tuples allow anything."""

    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # fnmatch globs on "provider/model"; no "/" = bare name


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    kind: PrincipalKind
    tenant: str  # tenant id; "wallet:<caip10>" for wallets
    key_id: str | None = None  # api / management keys
    key_hash: str | None = None  # their sha256 hex (public: the management API's "hash")
    wallet: str | None = None  # CAIP-10 account for wallets
    scopes: tuple[Scope, ...] = ()
    method: AuthMethod = "bearer"
    # SPEC §9 rate limits that apply: (subject, its limits) for the key, then its tenant
    # (or the wallet account); empty when none is limited
    rate_limits: tuple[tuple[str, Limits], ...] = ()
