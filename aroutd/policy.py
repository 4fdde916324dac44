"""Authorization (SPEC §5): may this principal call this endpoint, provider and model?

- Endpoint kinds: management keys call only the management API; API keys and
  wallets call inference and ``balance`` (``GET /api/v1/balance``, SPEC §7);
  ``self`` (``GET /v1/key``, ``/api/v1/key``) answers about the presented key,
  so it takes API and management keys, and no wallet.
- Scope: a principal carries one :class:`Scope` per layer (tenant, then key); a
  request must pass every layer, which is exactly "tenant scope ∩ key scope".
  Empty lists allow anything. The provider is checked before the model.
- ``allowed_models`` are case-sensitive fnmatch globs against the canonical model
  ``provider/model``; a pattern without ``/`` matches the bare model name.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from aroutd.config.parse import WalletConfig
from aroutd.errors import Forbidden, Unauthorized
from aroutd.keytable.table import KeyEntry, Tenant
from aroutd.principal import AuthMethod, Principal, Scope
from aroutd.ratelimit.values import Limits

__all__ = [
    "Endpoint",
    "authorize_endpoint",
    "authorize_model",
    "model_allowed",
    "principal_for_key",
    "principal_for_wallet",
]

Endpoint = Literal["inference", "management", "self", "balance", "transactions"]

MSG_MGMT_ON_INFERENCE = "management keys cannot call inference endpoints"
MSG_NEEDS_MGMT = "this endpoint requires a management key"
MSG_NEEDS_KEY = "this endpoint requires an API key"
MSG_MODEL_REQUIRED = "this API key requires a model to be named"


def authorize_endpoint(principal: Principal, endpoint: Endpoint) -> None:
    """Raise Forbidden when the principal's kind may not call this kind of endpoint."""
    if endpoint == "management":
        if principal.kind != "management":
            raise Forbidden(MSG_NEEDS_MGMT)
    elif endpoint == "self":
        # GET /v1/key describes a key; a wallet has none (its balance is /api/v1/balance).
        if principal.kind == "wallet":
            raise Forbidden(MSG_NEEDS_KEY)
    elif principal.kind == "management":  # "inference", "balance" and "transactions"
        raise Forbidden(MSG_MGMT_ON_INFERENCE)


def model_allowed(patterns: tuple[str, ...], canonical_model: str) -> bool:
    """True when ``patterns`` is empty or one of them matches the canonical model."""
    if not patterns:
        return True
    bare = canonical_model.partition("/")[2]
    return any(
        fnmatchcase(canonical_model if "/" in pattern else bare, pattern) for pattern in patterns
    )


def authorize_model(
    principal: Principal, provider: str, canonical_model: str | None, *, choosable: bool = False
) -> None:
    """Raise Forbidden unless every scope allows the provider, then the model.

    A request without a model is checked on the provider only, unless the model
    could be chosen (``choosable``: it has a body, or is a WebSocket upgrade) and
    a scope restricts models: then the upstream's default model would be a way
    around the list, so a model must be named (SPEC §5).
    """
    for scope in principal.scopes:
        if scope.providers and provider not in scope.providers:
            raise Forbidden(f"provider '{provider}' is not allowed for this API key")
    if canonical_model is None:
        if choosable and any(scope.models for scope in principal.scopes):
            raise Forbidden(MSG_MODEL_REQUIRED)
        return
    for scope in principal.scopes:
        if not model_allowed(scope.models, canonical_model):
            raise Forbidden(f"model '{canonical_model}' is not allowed for this API key")


def principal_for_key(entry: KeyEntry, tenant: Tenant, method: AuthMethod) -> Principal:
    """The principal of a key-table or store key; scopes: the tenant's, then the key's."""
    kind: Literal["api", "management"]
    if entry.type == "api":
        kind = "api"
    elif entry.type == "management":
        kind = "management"
    else:
        # The key table parser refuses other types; never guess a kind.
        raise Unauthorized("invalid api key")
    return Principal(
        kind=kind,
        tenant=tenant.id,
        key_id=entry.id,
        key_hash=entry.digest.hex(),
        scopes=(
            Scope(providers=tenant.allowed_providers, models=tenant.allowed_models),
            Scope(providers=entry.allowed_providers, models=entry.allowed_models),
        ),
        method=method,
        rate_limits=_rate_limits(
            (f"key:{entry.digest.hex()}", entry.rpm_limit, entry.rpd_limit, entry.tpm_limit),
            (f"tenant:{tenant.id}", tenant.rpm_limit, tenant.rpd_limit, tenant.tpm_limit),
        ),
    )


def _rate_limits(
    *layers: tuple[str, int | None, int | None, int | None],
) -> tuple[tuple[str, Limits], ...]:
    """(subject, Limits) of each layer that limits anything (SPEC §9); subjects are named
    like the usage rows (``key:<hash>``, ``tenant:<id>``, ``wallet:<CAIP-10>``)."""
    return tuple(
        (subject, Limits(rpm=rpm, rpd=rpd, tpm=tpm))
        for subject, rpm, rpd, tpm in layers
        if rpm is not None or rpd is not None or tpm is not None
    )


def principal_for_wallet(caip10: str, wallet_cfg: WalletConfig, method: AuthMethod) -> Principal:
    """The principal of a verified wallet JWT: tenant ``wallet:<caip10>``, the [wallet] scope."""
    return Principal(
        kind="wallet",
        tenant=f"wallet:{caip10}",
        wallet=caip10,
        scopes=(Scope(providers=wallet_cfg.allowed_providers, models=wallet_cfg.allowed_models),),
        method=method,
        rate_limits=_rate_limits(
            (f"wallet:{caip10}", wallet_cfg.rpm_limit, wallet_cfg.rpd_limit, wallet_cfg.tpm_limit)
        ),
    )
