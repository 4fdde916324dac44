"""End to end: the management API of the real daemon, used by the real openai SDK.

Create a key over HTTP and use it; patch its restrictions and see them enforced;
disable, delete; SIGHUP; SIGKILL right after a burst of creates, then a restart;
two daemons sharing one state file (and, with ``reuse_port``, one port); the
``aroutd keys`` commands against a running daemon.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .e2e import Daemon, Proc, _spawn, aroutd, cli, mock_upstream, write_config
from .support import Keys, sha, unused_port

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Keys]]:
    keys = Keys()
    with mock_upstream() as (_, up_port):
        yield write_config(tmp_path, up_port, keys), keys


def api(d: Daemon, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{d.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {d.keys.mgmt}"},
        timeout=10,
    )


def oai(d: Daemon, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.base}/v1", api_key=key, max_retries=0)


def chat_status(d: Daemon, key: str, model: str = "gpt-4o-mini") -> int:
    try:
        oai(d, key).chat.completions.create(model=model, messages=MESSAGES)
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def test_create_use_patch_disable_delete_with_the_openai_sdk(
    setup: tuple[Path, Keys],
) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        made = api(d, "POST", "/api/v1/keys", {"name": "sdk app", "allowed_providers": ["openai"]})
        assert made.status_code == 201
        key, data = made.json()["key"], made.json()["data"]
        r = oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert r.choices[0].message.content == "mock reply to 1 messages"
        path = f"/api/v1/keys/{data['hash']}"
        assert api(d, "PATCH", path, {"allowed_models": ["openai/gpt-4o-mini"]}).status_code == 200
        with pytest.raises(openai.PermissionDeniedError) as refused:
            oai(d, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert "model 'openai/gpt-4o' is not allowed" in str(refused.value)
        assert chat_status(d, key) == 200
        assert api(d, "PATCH", path, {"disabled": True}).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert api(d, "PATCH", path, {"disabled": False}).status_code == 200
        assert chat_status(d, key) == 200
        d.proc.popen.send_signal(signal.SIGHUP)
        d.proc.wait_for('"event":"reload"')
        assert chat_status(d, key) == 200  # a reload keeps the stored keys
        assert api(d, "DELETE", path).json() == {"data": {"deleted": True}}
        assert chat_status(d, key) == 401
        changes = d.proc.events("key_change")
        assert [c["action"] for c in changes] == ["create", "update", "update", "update", "delete"]
        assert changes[1]["fields"] == ["allowed_models"] and changes[1]["by"] == "admin"
        assert all(c["hash"] == data["hash"] for c in changes)
        assert key not in d.proc.text() and key[8:] not in d.proc.text()


def test_a_burst_of_creates_survives_sigkill_and_restart(setup: tuple[Path, Keys]) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        made = []
        for i in range(30):
            r = api(d, "POST", "/api/v1/keys", {"name": f"burst {i}", "rpm_limit": 100 + i})
            made.append(r.json())
        gone = made[0]["data"]["hash"]
        assert api(d, "DELETE", f"/api/v1/keys/{gone}").status_code == 200
        disabled = made[1]["data"]["hash"]
        assert api(d, "PATCH", f"/api/v1/keys/{disabled}", {"disabled": True}).status_code == 200
        d.proc.popen.send_signal(signal.SIGKILL)  # right after the last answer
        d.proc.popen.wait(10)
    with aroutd(cfg, keys) as d:
        assert chat_status(d, made[0]["key"]) == 401
        assert chat_status(d, made[1]["key"]) == 401
        for one in made[2:]:
            assert chat_status(d, one["key"]) == 200
        listed = api(d, "GET", "/api/v1/keys?include_disabled=true&page_size=500").json()["data"]
        stored = {k["hash"]: k for k in listed if k["created_at"] is not None}
        assert set(stored) == {m["data"]["hash"] for m in made[1:]}
        assert stored[made[29]["data"]["hash"]]["rpm_limit"] == 129
        assert stored[disabled]["disabled"] is True


def _serve(cfg: Path) -> tuple[Proc, list[int]]:
    proc = _spawn(["serve", "--config", str(cfg)], "stderr", {"MOCK_UPSTREAM_KEY": "x"})
    line = proc.wait_for('"event":"listening"')
    return proc, [int(a.rsplit(":", 1)[1]) for a in json.loads(line)["addresses"]]


def test_two_instances_on_one_state_file_and_one_port(tmp_path: Path) -> None:
    """aroutd@.service: reuse_port instances on one host, one sqlite file. Each also has a
    port of its own, so the test can ask each instance in turn."""
    keys = Keys()
    shared = unused_port()
    extra = f'listen = ["127.0.0.1:{shared}", "127.0.0.1:0"]\nreuse_port = true'
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        text = cfg.read_text().replace('listen = ["127.0.0.1:0"]', extra)
        cfg.write_text(text)
        a, ports_a = _serve(cfg)
        b, ports_b = _serve(cfg)
        try:
            assert ports_a[0] == ports_b[0] == shared
            da, db = (Daemon(p, ports[1], keys, cfg) for p, ports in ((a, ports_a), (b, ports_b)))
            made = api(da, "POST", "/api/v1/keys", {"name": "shared"}).json()
            key, digest = made["key"], made["data"]["hash"]
            started = time.monotonic()
            while chat_status(db, key) != 200:
                assert time.monotonic() - started < 1.0, "not on the other instance within 1 s"
                time.sleep(0.02)
            api(db, "PATCH", f"/api/v1/keys/{digest}", {"allowed_models": ["openai/gpt-4o"]})
            started = time.monotonic()
            while chat_status(da, key) != 403:
                assert time.monotonic() - started < 1.0, "the change did not reach A within 1 s"
                time.sleep(0.02)
            api(da, "DELETE", f"/api/v1/keys/{digest}")
            started = time.monotonic()
            while chat_status(db, key, "gpt-4o") != 401:
                assert time.monotonic() - started < 1.0, "the delete did not reach B within 1 s"
                time.sleep(0.02)
            via_shared = Daemon(a, shared, keys, cfg)
            assert {chat_status(via_shared, keys.api) for _ in range(10)} == {200}
        finally:
            a.stop(signal.SIGKILL)
            b.stop(signal.SIGKILL)


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(cfg, "keys", *args)


def test_keys_commands_change_a_running_daemons_keys(setup: tuple[Path, Keys]) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        made = api(d, "POST", "/api/v1/keys", {"name": "ops\tkey"}).json()
        key, digest = made["key"], made["data"]["hash"]
        listed = _cli(cfg, "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0] == "HASH\tTENANT\tID\tSTATUS\tCREATED\tNAME"
        assert lines[1].split("\t")[:4] == [digest, "acme", f"api-{digest[:16]}", "active"]
        assert lines[1].endswith("\tops key")
        assert _cli(cfg, "list", "--tenant", "other").stdout.splitlines() == lines[:1]
        off = _cli(cfg, "disable", digest)
        assert (off.returncode, off.stdout) == (0, f"disabled {digest}\n")
        started = time.monotonic()
        while chat_status(d, key) != 401:
            assert time.monotonic() - started < 1.0
            time.sleep(0.02)
        assert _cli(cfg, "enable", digest.upper()).returncode == 0
        started = time.monotonic()
        while chat_status(d, key) != 200:
            assert time.monotonic() - started < 1.0
            time.sleep(0.02)
        refused = _cli(cfg, "delete", sha(keys.api))
        assert refused.returncode == 1
        assert refused.stderr == "aroutd keys delete: key is defined in the key table file\n"
        unknown = _cli(cfg, "disable", "0" * 64)
        assert (unknown.returncode, unknown.stderr) == (1, "aroutd keys disable: key not found\n")
        assert _cli(cfg, "delete", digest).returncode == 0
        assert _cli(cfg, "list").stdout.splitlines() == lines[:1]
