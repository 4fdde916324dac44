"""The management API on loopback (SPEC §7): the real daemon in-process, real h11 clients.

Create, list, get, patch, delete and ``GET /v1/key``; narrowing; tenant isolation;
the key table's keys read-only; a change in effect on the very next request; SIGHUP;
two daemons on one state file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from .support import Client, Harness, Keys, Reply, bearer, daemon, err, new_key, request, sha

CHAT = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
KEY_FIELDS = {
    "hash", "name", "key_type", "disabled", "limit", "limit_remaining", "limit_reset",
    "allowed_providers", "allowed_models", "usage", "usage_daily", "usage_weekly",
    "usage_monthly", "rpm_limit", "rpd_limit", "tpm_limit", "created_at", "updated_at",
    "expires_at",
}  # fmt: skip


@dataclass
class Tenants(Keys):
    """acme (providers openai/anthropic/google) and beta (openai gpt-4o* only, limited)."""

    beta_mgmt: str = field(default_factory=lambda: new_key("lr_mgmt_"))
    beta_api: str = field(default_factory=new_key)
    extra: str = ""

    def table(self) -> str:
        return (
            super().table()
            + f"""
[tenants.beta]
allowed_providers = ["openai"]
allowed_models = ["openai/gpt-4o*"]
limit = 100.0
limit_reset = "monthly"
rpm_limit = 600

[[keys]]
id = "beta-admin"
tenant = "beta"
type = "management"
sha256 = "{sha(self.beta_mgmt)}"

[[keys]]
id = "beta-app"
tenant = "beta"
sha256 = "{sha(self.beta_api)}"
"""
            + self.extra
        )


def beta(h: Harness) -> Tenants:
    assert isinstance(h.keys, Tenants)
    return h.keys


async def call(
    h: Harness, method: str, target: str, body: Any = None, key: str | None = None
) -> Reply:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = [bearer(key or h.keys.mgmt)]
    if body is not None:
        headers.append(("content-type", "application/json"))
    return await request(h.port, method, target, headers, raw)


async def create(h: Harness, body: Any, key: str | None = None) -> tuple[str, dict[str, Any]]:
    r = await call(h, "POST", "/api/v1/keys", body, key)
    assert r.status == 201, r.body
    answer = r.json()
    return answer["key"], answer["data"]


async def chat(h: Harness, key: str, body: bytes = CHAT) -> Reply:
    headers = [bearer(key), ("content-type", "application/json")]
    return await request(h.port, "POST", "/v1/chat/completions", headers, body)


def tenants() -> Tenants:
    return Tenants()


async def test_create_answers_arouters_shape_and_the_key_works_at_once(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        r = await call(h, "POST", "/api/v1/keys", {"name": "production-backend", "limit": 150})
        assert r.status == 201 and r.header(b"content-type") == b"application/json"
        answer = r.json()
        assert set(answer) == {"data", "key"}
        key, data = answer["key"], answer["data"]
        assert key.startswith("lr_live_") and len(key) == 56
        assert set(data) == KEY_FIELDS
        assert data["hash"] == sha(key)
        assert data["key_type"] == "regular" and data["disabled"] is False
        assert (data["limit"], data["limit_remaining"], data["limit_reset"]) == (150, 150, None)
        assert (data["usage"], data["usage_daily"]) == (0, 0)
        assert data["allowed_providers"] == [] and data["allowed_models"] == []
        assert data["created_at"].endswith("Z") and data["created_at"] == data["updated_at"]
        assert data["expires_at"] is None and data["rpm_limit"] is None
        # the very next request, on a fresh connection, is served with it
        used = await chat(h, key)
        assert used.status == 200, used.body
        assert (
            h.upstream.requests[-1].header(b"x-arouter-key-id") == f"api-{sha(key)[:16]}".encode()
        )
        assert h.upstream.requests[-1].header(b"x-arouter-tenant") == b"acme"
        # only the hash is stored
        dump = "\n".join(sqlite3.connect(h.config.state.path).iterdump())
        assert sha(key) in dump and key not in dump and key[8:] not in dump


async def test_list_get_and_pagination(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        made = [await create(h, {"name": f"k{i}"}) for i in range(5)]
        r = await call(h, "GET", "/api/v1/keys")
        assert r.status == 200
        listed = r.json()["data"]
        # the key table's API keys of the tenant first (not its management key), then the store's
        names = [k["name"] for k in listed]
        file_hashes = {sha(h.keys.api), sha(h.keys.narrow), sha(h.keys.expired)}
        assert {k["hash"] for k in listed[:3]} == file_hashes  # "off" is disabled
        assert names[3:] == ["k0", "k1", "k2", "k3", "k4"]
        assert sha(h.keys.mgmt) not in {k["hash"] for k in listed}
        assert sha(beta(h).beta_api) not in {k["hash"] for k in listed}
        with_disabled = (await call(h, "GET", "/api/v1/keys?include_disabled=true")).json()["data"]
        assert sha(h.keys.disabled) in {k["hash"] for k in with_disabled}
        page = (await call(h, "GET", "/api/v1/keys?offset=4&page_size=2")).json()["data"]
        assert [k["name"] for k in page] == ["k1", "k2"]
        assert (await call(h, "GET", "/api/v1/keys?offset=99")).json() == {"data": []}
        one = await call(h, "GET", f"/api/v1/keys/{made[2][1]['hash']}")
        assert one.json() == {"data": made[2][1]}
        upper = await call(h, "GET", f"/api/v1/keys/{made[2][1]['hash'].upper()}")
        assert upper.json() == {"data": made[2][1]}
        file_key = (await call(h, "GET", f"/api/v1/keys/{sha(h.keys.narrow)}")).json()["data"]
        assert file_key["allowed_models"] == ["openai/gpt-4o-mini"]
        assert file_key["created_at"] is None
        head = await call(h, "HEAD", "/api/v1/keys")
        assert head.status == 200 and head.body == b""
        bad = await call(h, "GET", "/api/v1/keys?page_size=1000")
        assert (bad.status, bad.json()) == (
            400,
            err("page_size: must be an integer from 1 to 500", "invalid_request_error"),
        )


async def test_patch_restrictions_are_enforced_on_the_next_request(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        key, data = await create(h, {"name": "app"})
        path = f"/api/v1/keys/{data['hash']}"
        r = await call(h, "PATCH", path, {"allowed_models": ["openai/gpt-4o-mini"], "limit": 5})
        assert r.status == 200, r.body
        patched = r.json()["data"]
        assert patched["allowed_models"] == ["openai/gpt-4o-mini"] and patched["limit"] == 5
        assert patched["created_at"] == data["created_at"]
        refused = await chat(h, key)  # gpt-4o
        assert (refused.status, refused.json()) == (
            403,
            err("model 'openai/gpt-4o' is not allowed for this API key", "forbidden_error"),
        )
        mini = json.dumps({"model": "gpt-4o-mini", "messages": []}).encode()
        assert (await chat(h, key, mini)).status == 200
        # null clears limit and limit_reset; the lists stay as they were
        cleared = await call(h, "PATCH", path, {"limit": None, "limit_reset": None})
        assert cleared.json()["data"]["limit"] is None
        assert cleared.json()["data"]["allowed_models"] == ["openai/gpt-4o-mini"]
        # disabled: 401 like an unknown key, at once; enabled again: served
        assert (await call(h, "PATCH", path, {"disabled": True})).status == 200
        off = await chat(h, key, mini)
        assert (off.status, off.json()) == (401, err("invalid api key", "authentication_error"))
        assert (await call(h, "PATCH", path, {"disabled": False})).status == 200
        assert (await chat(h, key, mini)).status == 200


async def test_a_keep_alive_connection_sees_the_change_on_its_next_request(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        key, data = await create(h, {"name": "app"})
        async with Client.open(h.port) as c:
            headers = [bearer(key), ("content-type", "application/json")]
            assert (await c.request("POST", "/v1/chat/completions", headers, CHAT)).status == 200
            deleted = await call(h, "DELETE", f"/api/v1/keys/{data['hash']}")
            assert (deleted.status, deleted.json()) == (200, {"data": {"deleted": True}})
            gone = await c.request("POST", "/v1/chat/completions", headers, CHAT)
            assert gone.status == 401
        for method in ("GET", "PATCH", "DELETE"):
            r = await call(
                h, method, f"/api/v1/keys/{data['hash']}", {} if method == "PATCH" else None
            )
            assert (r.status, r.json()) == (404, err("key not found", "not_found_error")), method


async def test_narrowing_only(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        beta_key = beta(h).beta_mgmt
        exceeds = err("requested permissions exceed tenant scope", "forbidden_error")
        for body in (
            {"name": "x", "allowed_providers": ["anthropic"]},
            {"name": "x", "allowed_providers": ["openai", "anthropic"]},
            {"name": "x", "allowed_models": ["openai/*"]},
            {"name": "x", "allowed_models": ["*"]},
            {"name": "x", "limit": 100.01},
            {"name": "x", "rpm_limit": 601},
        ):
            r = await call(h, "POST", "/api/v1/keys", body, beta_key)
            assert (r.status, r.json()) == (403, exceeds), body
        ok_key, ok = await create(
            h,
            {
                "name": "x",
                "allowed_models": ["openai/gpt-4o-mini", "gpt-4o"],
                "limit": 100,
                "rpm_limit": 60,
            },
            beta_key,
        )
        assert ok["allowed_providers"] == []  # inherits the tenant's
        r = await call(
            h, "PATCH", f"/api/v1/keys/{ok['hash']}", {"allowed_models": ["gpt-*"]}, beta_key
        )
        assert (r.status, r.json()) == (403, exceeds)
        # the tenant's scope applies on top of an inherited one
        r = await chat(
            h, ok_key, json.dumps({"model": "anthropic/claude", "messages": []}).encode()
        )
        assert r.status == 403
        assert (await chat(h, ok_key)).status == 200


async def test_tenants_are_isolated(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        _, acme_key = await create(h, {"name": "acme's"})
        _, beta_key = await create(h, {"name": "beta's"}, beta(h).beta_mgmt)
        for key, other in ((h.keys.mgmt, beta_key), (beta(h).beta_mgmt, acme_key)):
            for method in ("GET", "PATCH", "DELETE"):
                body = {"name": "stolen"} if method == "PATCH" else None
                r = await call(h, method, f"/api/v1/keys/{other['hash']}", body, key)
                assert (r.status, r.json()) == (404, err("key not found", "not_found_error"))
            listed = (await call(h, "GET", "/api/v1/keys?include_disabled=true", key=key)).json()
            assert other["hash"] not in {k["hash"] for k in listed["data"]}
        # another tenant's key table key is unknown too, not read-only
        r = await call(
            h, "PATCH", f"/api/v1/keys/{sha(h.keys.api)}", {"name": "x"}, beta(h).beta_mgmt
        )
        assert r.status == 404
        still = await call(h, "GET", f"/api/v1/keys/{beta_key['hash']}", key=beta(h).beta_mgmt)
        assert still.json()["data"]["name"] == "beta's"


async def test_key_table_keys_are_read_only(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        for method, body in (("PATCH", {"disabled": True}), ("DELETE", None)):
            r = await call(h, method, f"/api/v1/keys/{sha(h.keys.api)}", body)
            assert (r.status, r.json()) == (
                409,
                err("key is defined in the key table file", "invalid_request_error"),
            )
        assert (await chat(h, h.keys.api)).status == 200


PAST = "2001-01-01T00:00:00Z"
PAST_MSG = "expires_at: must be in the future"
BAD_RESET = 'limit_reset: must be "daily", "weekly", "monthly" or null'


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "message"),
    [
        ("POST", "/api/v1/keys", b"{", 400, "request body must be a JSON object"),
        ("POST", "/api/v1/keys", {"name": "x", "nope": 1}, 400, "nope: unknown field"),
        ("POST", "/api/v1/keys", {"name": 1}, 400, "name: must be a string of 1 to 200 characters"),
        ("POST", "/api/v1/keys", {"name": "x", "expires_at": PAST}, 400, PAST_MSG),
        ("POST", "/api/v1/keys", {"name": "x", "limit_reset": "yearly"}, 400, BAD_RESET),
        ("PATCH", "/api/v1/keys/" + "0" * 64, {"name": "x"}, 404, "key not found"),
        ("GET", "/api/v1/keys/nothex", None, 404, "key not found"),
        ("GET", "/api/v1/keys/" + "0" * 64 + "/more", None, 404, "key not found"),
        ("PUT", "/api/v1/keys", None, 405, "method not allowed"),
        ("POST", "/api/v1/keys/" + "0" * 64, None, 405, "method not allowed"),
    ],
)  # fmt: skip
async def test_bad_requests(
    tmp_path: Path, method: str, target: str, body: Any, status: int, message: str
) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        r = await call(h, method, target, body)
        kind = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error"}
        assert (r.status, r.json()) == (status, err(message, kind[status]))


async def test_an_oversized_body_is_413(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        r = await call(h, "POST", "/api/v1/keys", b'{"name": "' + b"x" * 70000 + b'"}')
        assert r.status == 413


async def test_current_key(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants()) as h:
        key, _ = await create(
            h, {"name": "self", "limit": 7, "limit_reset": "daily", "rpm_limit": 600}
        )
        for path in ("/v1/key", "/api/v1/key"):
            r = await request(h.port, "GET", path, [bearer(key)])
            assert r.status == 200
            assert r.json() == {
                "data": {
                    "name": "self",
                    "label": "self",
                    "limit": 7,
                    "limit_reset": "daily",
                    "limit_remaining": 7,
                    "usage": 0,
                    "usage_daily": 0,
                    "usage_weekly": 0,
                    "usage_monthly": 0,
                    "expires_at": None,
                    "is_management_key": False,
                    "rpm_limit": 600,
                    "rpd_limit": None,
                    "tpm_limit": None,
                }
            }
        mine = (await request(h.port, "GET", "/v1/key", [bearer(h.keys.mgmt)])).json()["data"]
        assert mine["is_management_key"] is True
        post = await request(h.port, "POST", "/v1/key", [bearer(key)])
        assert post.status == 405


async def _sighup_until(h: Harness, key: str, key_id: bytes) -> None:
    """A real SIGHUP to this process (the in-process daemon's), until ``key`` is served
    under ``key_id``."""
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(10):
        while True:
            r = await chat(h, key)
            if r.status == 200 and h.upstream.requests[-1].header(b"x-arouter-key-id") == key_id:
                return
            await trio.sleep(0.05)


async def test_changes_survive_sighup_and_a_file_key_wins_a_conflict(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    keys = tenants()
    async with daemon(tmp_path, keys=keys) as h:
        key, data = await create(h, {"name": "survivor", "allowed_models": ["openai/gpt-4o"]})
        own_id = f"api-{data['hash'][:16]}".encode()
        await _sighup_until(h, key, own_id)  # a plain reload keeps the stored key
        # the operator pastes the same hash into the file, for another tenant: the file wins
        keys.extra = f'\n[[keys]]\nid = "pasted"\ntenant = "beta"\nsha256 = "{data["hash"]}"\n'
        (tmp_path / "keys.toml").write_text(keys.table())
        await _sighup_until(h, key, b"pasted")
        keys.extra += "\n"  # the same table again: the conflict is not logged twice
        (tmp_path / "keys.toml").write_text(keys.table())
        await _sighup_until(h, key, b"pasted")
        r = await call(h, "PATCH", f"/api/v1/keys/{data['hash']}", {"name": "x"})
        assert r.status == 404  # beta's now, as far as acme's management key can tell
        keys.extra = ""
        (tmp_path / "keys.toml").write_text(keys.table())
        await _sighup_until(h, key, own_id)
    conflicts = [line for line in capfd.readouterr().err.splitlines() if "key_conflict" in line]
    assert len(conflicts) == 1 and '"kept":"file"' in conflicts[0], conflicts


async def test_two_daemons_on_one_state_file(tmp_path: Path) -> None:
    keys = tenants()
    async with daemon(tmp_path, keys=keys) as a, daemon(tmp_path, keys=keys) as b:
        assert a.config.state.path == b.config.state.path
        key, data = await create(a, {"name": "shared"})
        await _until_status(b, key, 200)  # within one second on the other instance
        await call(b, "PATCH", f"/api/v1/keys/{data['hash']}", {"disabled": True})
        await _until_status(a, key, 401)
        listed = (await call(a, "GET", "/api/v1/keys?include_disabled=true")).json()["data"]
        assert [k["disabled"] for k in listed if k["hash"] == data["hash"]] == [True]


async def _until_status(h: Harness, key: str, status: int, within_s: float = 1.0) -> None:
    with trio.fail_after(within_s):
        while True:
            if (await chat(h, key)).status == status:
                return
            await trio.sleep(0.02)


async def test_metrics_count_the_stored_keys(tmp_path: Path) -> None:
    async with daemon(tmp_path, keys=tenants(), admin_listen=("127.0.0.1", 0)) as h:
        for name in ("a", "b"):
            await create(h, {"name": name})
        text = (await request(h.admin_port, "GET", "/metrics")).body.decode()
        assert "aroutd_store_keys 2" in text and "aroutd_keys_loaded 7" in text
