"""aroutd.manage.changes and views: the key a management request makes, never wider than
its tenant, and ARouter's JSON shapes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from aroutd.errors import Forbidden
from aroutd.keytable.table import KeyEntry, Tenant
from aroutd.manage.changes import changed_fields, new_key_entry, patched_entry, store_key_id
from aroutd.manage.views import key_object, self_object
from aroutd.policy import model_allowed

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DIGEST = bytes(range(32))
OPENAI_ONLY = Tenant(
    id="beta", allowed_providers=("openai",), allowed_models=("openai/gpt-4o*",), limit=100.0
)


def make(fields: Mapping[str, object], tenant: Tenant = OPENAI_ONLY) -> KeyEntry:
    return new_key_entry(fields, tenant=tenant, digest=DIGEST, created_by="admin", now=NOW)


def test_a_new_key_carries_its_fields_and_origin() -> None:
    entry = make({"name": "ci", "allowed_models": ("gpt-4o",), "limit": 5.0, "rpm_limit": 9})
    assert entry.id == store_key_id(DIGEST) == "api-" + DIGEST.hex()[:16]
    assert (entry.tenant, entry.type, entry.source, entry.created_by) == (
        "beta",
        "api",
        "store",
        "admin",
    )
    assert entry.created_at == entry.updated_at == NOW
    assert (entry.allowed_models, entry.limit, entry.rpm_limit) == (("gpt-4o",), 5.0, 9)
    assert entry.allowed_providers == ()  # inherits the tenant's


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({"allowed_models": ("gpt-4o",)}, True),  # bare, but the key can only reach openai
        ({"allowed_models": ("gpt-4o-mini", "openai/gpt-4o")}, True),
        ({"allowed_models": ("gpt-5",)}, False),
        ({"allowed_models": ("*",)}, False),
        ({"allowed_providers": ("openai", "anthropic")}, False),
        ({"limit": 100.0}, True),
        ({"limit": 100.5}, False),
        ({"limit": None}, True),  # the tenant's limit still applies
    ],
)
def test_narrowing_against_the_tenant(fields: dict[str, object], allowed: bool) -> None:
    if allowed:
        make({"name": "x", **fields})
        return
    with pytest.raises(Forbidden) as caught:
        make({"name": "x", **fields})
    assert caught.value.message == "requested permissions exceed tenant scope"


def test_a_bare_glob_needs_the_providers_known() -> None:
    anyone = Tenant(id="t", allowed_models=("openai/gpt-4o*",))  # any provider
    with pytest.raises(Forbidden):
        make({"name": "x", "allowed_models": ("gpt-4o",)}, anyone)
    make({"name": "x", "allowed_models": ("gpt-4o",), "allowed_providers": ("openai",)}, anyone)


def test_a_patch_checks_what_it_sets_with_both_lists_as_they_will_be() -> None:
    tenant = Tenant(id="t", allowed_models=("openai/gpt-4o*", "anthropic/claude*"))
    entry = make(
        {"name": "x", "allowed_models": ("gpt-4o",), "allowed_providers": ("openai",)}, tenant
    )
    with pytest.raises(Forbidden):  # gpt-4o under anthropic is outside the tenant
        patched_entry(entry, {"allowed_providers": ("openai", "anthropic")}, tenant=tenant, now=NOW)
    later = NOW + timedelta(minutes=1)
    renamed = patched_entry(entry, {"name": "y", "limit": None}, tenant=tenant, now=later)
    assert (renamed.name, renamed.updated_at, renamed.created_at) == ("y", later, NOW)
    assert changed_fields(entry, renamed) == ["name"]


def test_views_are_arouters_shapes() -> None:
    entry = make({"name": "ci", "limit": 5.0, "limit_reset": "daily"})
    shown = key_object(entry)
    assert shown["hash"] == DIGEST.hex() and shown["key_type"] == "regular"
    assert (shown["limit"], shown["limit_remaining"], shown["usage_monthly"]) == (5.0, 5.0, 0.0)
    assert shown["created_at"] == "2026-12-01T12:00:00Z" and shown["expires_at"] is None
    assert self_object(entry)["is_management_key"] is False


PROVIDERS = ("openai", "anthropic", "google")
GLOB = st.text(alphabet="ab*?", min_size=1, max_size=4)
PATTERN = GLOB | st.tuples(st.sampled_from(PROVIDERS), GLOB).map("/".join)
# every model of up to 3 letters "a"/"b" under every provider: the property is checked on
# all of them, not on a sample
NAMES = ["".join(t) for n in range(4) for t in itertools.product("ab", repeat=n)]
MODELS = [f"{p}/{name}" for p in PROVIDERS for name in NAMES]


def _admits(providers: tuple[str, ...], models: tuple[str, ...], provider: str, model: str) -> bool:
    return (not providers or provider in providers) and model_allowed(models, model)


@settings(max_examples=400, deadline=None)
@given(
    tenant_providers=st.lists(st.sampled_from(PROVIDERS), max_size=2, unique=True).map(tuple),
    tenant_models=st.lists(PATTERN, max_size=2).map(tuple),
    key_providers=st.lists(st.sampled_from(PROVIDERS), max_size=2, unique=True).map(tuple),
    key_models=st.lists(PATTERN, max_size=2).map(tuple),
)
@example(  # a bare glob must be within the tenant under each provider the key may use
    tenant_providers=("openai", "anthropic"),
    tenant_models=("openai/a*",),
    key_providers=("openai", "anthropic"),
    key_models=("a",),
)
def test_a_narrowed_key_never_admits_what_its_tenant_refuses(
    tenant_providers: tuple[str, ...],
    tenant_models: tuple[str, ...],
    key_providers: tuple[str, ...],
    key_models: tuple[str, ...],
) -> None:
    """The key's own layer (empty lists inherit the tenant's), read alone, admits only
    requests the tenant's scope admits: the check is sound without the intersection."""
    tenant = Tenant(id="t", allowed_providers=tenant_providers, allowed_models=tenant_models)
    fields = {"name": "x", "allowed_providers": key_providers, "allowed_models": key_models}
    try:
        make(fields, tenant)
    except Forbidden:
        event("refused")
        return
    event("accepted")
    providers = key_providers or tenant_providers
    models = key_models or tenant_models
    for model in MODELS:
        provider = model.partition("/")[0]
        if _admits(providers, models, provider, model):
            assert _admits(tenant_providers, tenant_models, provider, model), (model, fields)
