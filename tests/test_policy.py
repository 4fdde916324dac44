"""aroutd.policy: endpoint kinds and provider/model scope (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aroutd.config.parse import WalletConfig
from aroutd.errors import Forbidden, Unauthorized
from aroutd.keytable.table import KeyEntry, Tenant
from aroutd.policy import (
    authorize_endpoint,
    authorize_model,
    model_allowed,
    principal_for_key,
    principal_for_wallet,
)
from aroutd.principal import Principal, Scope

API = Principal(kind="api", tenant="acme", key_id="k")
MGMT = Principal(kind="management", tenant="acme", key_id="admin")
WALLET = Principal(kind="wallet", tenant="wallet:eip155:8453:0xAb", wallet="eip155:8453:0xAb")

NEEDS_MGMT = "this endpoint requires a management key"
MGMT_ON_INFERENCE = "management keys cannot call inference endpoints"


@pytest.mark.parametrize(
    ("principal", "endpoint", "message"),
    [
        pytest.param(API, "inference", None, id="api-inference"),
        pytest.param(WALLET, "inference", None, id="wallet-inference"),
        pytest.param(MGMT, "inference", MGMT_ON_INFERENCE, id="mgmt-inference"),
        pytest.param(MGMT, "management", None, id="mgmt-management"),
        pytest.param(API, "management", NEEDS_MGMT, id="api-management"),
        pytest.param(WALLET, "management", NEEDS_MGMT, id="wallet-management"),
        pytest.param(API, "self", None, id="api-self"),
        pytest.param(MGMT, "self", None, id="mgmt-self"),
        pytest.param(WALLET, "self", "this endpoint requires an API key", id="wallet-self"),
        pytest.param(API, "balance", None, id="api-balance"),
        pytest.param(WALLET, "balance", None, id="wallet-balance"),
        pytest.param(MGMT, "balance", MGMT_ON_INFERENCE, id="mgmt-balance"),
        pytest.param(API, "transactions", None, id="api-transactions"),
        pytest.param(WALLET, "transactions", None, id="wallet-transactions"),
        pytest.param(MGMT, "transactions", MGMT_ON_INFERENCE, id="mgmt-transactions"),
    ],
)
def test_authorize_endpoint(principal: Principal, endpoint: str, message: str | None) -> None:
    if message is None:
        authorize_endpoint(principal, endpoint)  # type: ignore[arg-type]
        return
    with pytest.raises(Forbidden) as exc:
        authorize_endpoint(principal, endpoint)  # type: ignore[arg-type]
    assert exc.value.status == 403
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        pytest.param((), "openai/gpt-4o", True, id="empty-allows-all"),
        pytest.param(("gpt-4o*",), "openai/gpt-4o", True, id="bare-pattern"),
        pytest.param(("gpt-4o*",), "openai/gpt-4o-mini", True, id="bare-pattern-glob"),
        pytest.param(("gpt-4o*",), "anthropic/gpt-4o", True, id="bare-pattern-any-provider"),
        pytest.param(("gpt-4o",), "openai/gpt-4o-mini", False, id="bare-exact"),
        pytest.param(("anthropic/*",), "anthropic/claude-3", True, id="provider-glob"),
        pytest.param(("anthropic/*",), "openai/gpt-4o", False, id="provider-glob-other"),
        pytest.param(("openai/gpt-4o*",), "openai/gpt-4o-mini", True, id="canonical-glob"),
        pytest.param(("openai/gpt-4o*",), "openai/gpt-3.5", False, id="canonical-glob-miss"),
        pytest.param(("openai/GPT-4o",), "openai/gpt-4o", False, id="case-sensitive"),
        pytest.param(("*",), "openai/meta-llama/llama-3", True, id="star"),
        pytest.param(("llama-3",), "openai/meta-llama/llama-3", False, id="bare-is-after-provider"),
        pytest.param(
            ("meta-llama/*",), "openai/meta-llama/llama-3", False, id="slash-pattern-canonical"
        ),
        pytest.param(("openai/*",), "openai/meta-llama/llama-3", True, id="star-crosses-slash"),
        pytest.param(("x", "openai/gpt-4o"), "openai/gpt-4o", True, id="any-pattern"),
    ],
)
def test_model_allowed(patterns: tuple[str, ...], model: str, allowed: bool) -> None:
    assert model_allowed(patterns, model) is allowed


TENANT_SCOPE = Scope(providers=("openai", "anthropic"), models=("openai/gpt-4o*", "anthropic/*"))
KEY_SCOPE = Scope(providers=("openai",), models=("gpt-4o-mini",))


@pytest.mark.parametrize(
    ("scopes", "provider", "model", "message"),
    [
        pytest.param((), "openai", "openai/gpt-4o", None, id="no-scope"),
        pytest.param((Scope(),), "x", "x/y", None, id="empty-scope"),
        pytest.param((TENANT_SCOPE,), "anthropic", "anthropic/claude-3", None, id="tenant-ok"),
        pytest.param(
            (TENANT_SCOPE,),
            "google",
            "google/gemini",
            "provider 'google' is not allowed for this API key",
            id="tenant-provider",
        ),
        pytest.param(
            (TENANT_SCOPE,),
            "openai",
            "openai/o1",
            "model 'openai/o1' is not allowed for this API key",
            id="tenant-model",
        ),
        pytest.param((TENANT_SCOPE, KEY_SCOPE), "openai", "openai/gpt-4o-mini", None, id="both-ok"),
        pytest.param(
            (TENANT_SCOPE, KEY_SCOPE),
            "anthropic",
            "anthropic/claude-3",
            "provider 'anthropic' is not allowed for this API key",
            id="key-narrows-provider",
        ),
        pytest.param(
            (TENANT_SCOPE, KEY_SCOPE),
            "openai",
            "openai/gpt-4o",
            "model 'openai/gpt-4o' is not allowed for this API key",
            id="key-narrows-model",
        ),
        pytest.param(
            (Scope(models=("x/*",)), Scope(providers=("openai",))),
            "google",
            "google/gemini",
            "provider 'google' is not allowed for this API key",
            id="provider-checked-first-across-scopes",
        ),
        pytest.param((TENANT_SCOPE, KEY_SCOPE), "openai", None, None, id="no-model-provider-ok"),
        pytest.param(
            (TENANT_SCOPE, KEY_SCOPE),
            "google",
            None,
            "provider 'google' is not allowed for this API key",
            id="no-model-provider-denied",
        ),
        pytest.param(
            (Scope(models=("gpt-4o*",)),),
            "openai",
            "openai/meta-llama/llama-3",
            "model 'openai/meta-llama/llama-3' is not allowed for this API key",
            id="unknown-prefix-canonical",
        ),
    ],
)
def test_authorize_model(
    scopes: tuple[Scope, ...], provider: str, model: str | None, message: str | None
) -> None:
    principal = Principal(kind="api", tenant="acme", key_id="k", scopes=scopes)
    if message is None:
        authorize_model(principal, provider, model)
        return
    with pytest.raises(Forbidden) as exc:
        authorize_model(principal, provider, model)
    assert exc.value.status == 403
    assert exc.value.message == message


def test_principal_for_key() -> None:
    tenant = Tenant(id="acme", allowed_providers=("openai", "anthropic"), allowed_models=("a/*",))
    entry = KeyEntry(
        id="ci-bot",
        tenant="acme",
        type="api",
        digest=b"\0" * 32,
        allowed_providers=("openai",),
        allowed_models=("a/b",),
    )
    assert principal_for_key(entry, tenant, "x-api-key") == Principal(
        kind="api",
        tenant="acme",
        key_hash="00" * 32,
        key_id="ci-bot",
        wallet=None,
        scopes=(
            Scope(providers=("openai", "anthropic"), models=("a/*",)),
            Scope(providers=("openai",), models=("a/b",)),
        ),
        method="x-api-key",
    )


def test_principal_for_management_key() -> None:
    entry = KeyEntry(id="admin", tenant="acme", type="management", digest=b"\0" * 32)
    principal = principal_for_key(entry, Tenant(id="acme"), "bearer")
    assert principal.kind == "management"
    assert principal.scopes == (Scope(), Scope())


def test_principal_for_key_unknown_type() -> None:
    entry = KeyEntry(id="x", tenant="acme", type="root", digest=b"\0" * 32)
    with pytest.raises(Unauthorized, match="invalid api key"):
        principal_for_key(entry, Tenant(id="acme"), "bearer")


def test_principal_for_wallet() -> None:
    cfg = WalletConfig(
        jwt_secret_file=Path("/x"), allowed_providers=("openai",), allowed_models=("openai/*",)
    )
    caip10 = "eip155:8453:0xAbC0000000000000000000000000000000000001"
    assert principal_for_wallet(caip10, cfg, "bearer") == Principal(
        kind="wallet",
        tenant=f"wallet:{caip10}",
        key_id=None,
        wallet=caip10,
        scopes=(Scope(providers=("openai",), models=("openai/*",)),),
        method="bearer",
    )


@pytest.mark.parametrize(
    ("scopes", "provider", "message"),
    [
        pytest.param(
            (TENANT_SCOPE, KEY_SCOPE),
            "openai",
            "this API key requires a model to be named",
            id="restricted-models",
        ),
        pytest.param(
            (Scope(providers=("openai",)), Scope(models=("openai/*",))),
            "openai",
            "this API key requires a model to be named",
            id="key-layer-restricts",
        ),
        pytest.param(
            (TENANT_SCOPE, KEY_SCOPE),
            "google",
            "provider 'google' is not allowed for this API key",
            id="provider-still-first",
        ),
        pytest.param((Scope(providers=("openai",)),), "openai", None, id="providers-only-ok"),
        pytest.param((), "openai", None, id="unrestricted-ok"),
    ],
)
def test_a_model_must_be_named_where_one_could_be_chosen(
    scopes: tuple[Scope, ...], provider: str, message: str | None
) -> None:
    principal = Principal(kind="api", tenant="acme", key_id="k", scopes=scopes)
    if message is None or "requires" in message:
        authorize_model(principal, provider, None)  # no body: the provider alone decides
    if message is None:
        authorize_model(principal, provider, None, choosable=True)
        return
    with pytest.raises(Forbidden) as exc:
        authorize_model(principal, provider, None, choosable=True)
    assert exc.value.message == message
