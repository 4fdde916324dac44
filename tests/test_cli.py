"""The command line (SPEC §1) as a subprocess: check, keys new, keys hash, demo."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from aroutd.keytable.table import parse_keytable

from .e2e import Proc

ROOT = Path(__file__).resolve().parent.parent


def aroutd(
    *args: str, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aroutd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "GEMINI_API_KEY": "x"},
    )


def test_keys_new_prints_the_key_once_and_a_valid_entry(tmp_path: Path) -> None:
    out = aroutd("keys", "new", "--tenant", "acme", "--id", "ci-bot")
    assert out.returncode == 0, out.stderr
    key = out.stdout.splitlines()[0]
    assert re.fullmatch(r"lr_live_[0-9a-f]{48}", key)
    assert out.stdout.count(key) == 1
    entry = out.stdout[len(key) :]
    table = parse_keytable("[tenants.acme]\n" + entry, path=tmp_path / "k.toml")
    found = table.lookup(hashlib.sha256(key.encode()).digest())
    assert found is not None
    assert (found.id, found.tenant, found.type) == ("ci-bot", "acme", "api")


def test_keys_new_management_and_bad_tenant() -> None:
    out = aroutd("keys", "new", "--tenant", "acme", "--type", "management")
    assert re.fullmatch(r"lr_mgmt_[0-9a-f]{48}", out.stdout.splitlines()[0])
    bad = aroutd("keys", "new", "--tenant", "no spaces")
    assert bad.returncode == 2
    assert "tenant" in bad.stderr


def test_keys_hash() -> None:
    key = "lr_live_" + "ab" * 24
    out = aroutd("keys", "hash", stdin=key + "\n")
    assert out.returncode == 0
    assert out.stdout.strip() == hashlib.sha256(key.encode()).hexdigest()


def test_check_valid_and_invalid(tmp_path: Path) -> None:
    ok = aroutd("check", "--config", str(ROOT / "config" / "aroutd.toml"))
    assert ok.returncode == 0, ok.stderr
    cfg = tmp_path / "aroutd.toml"
    cfg.write_text('[server]\nlisten = ["127.0.0.1:1"]\nbogus = 1\n\n[keys]\nfile = "keys.toml"\n')
    (tmp_path / "keys.toml").write_text('[[keys]]\nid = "a"\ntenant = "missing"\nsha256 = "00"\n')
    bad = aroutd("check", "--config", str(cfg))
    assert bad.returncode == 1
    assert f"{cfg}:3:" in bad.stderr  # the unknown key, with its line
    assert "bogus" in bad.stderr


def test_check_reports_key_table_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "aroutd.toml"
    cfg.write_text('[keys]\nfile = "keys.toml"\n')
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[tenants.t]\n\n[[keys]]\nid = "a"\ntenant = "nope"\nsha256 = "' + "0" * 64 + '"\n'
    )
    bad = aroutd("check", "--config", str(cfg))
    assert bad.returncode == 1
    assert f"{keys}:" in bad.stderr
    assert "'a'" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_prints_a_key_that_works(tmp_path: Path) -> None:
    """The README's first quick-start command, on free ports."""
    port, mock_port = _free_port(), _free_port()
    text = (ROOT / "config" / "demo.toml").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
        "127.0.0.1:9999", f"127.0.0.1:{mock_port}"
    )
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    popen = subprocess.Popen(
        [sys.executable, "-m", "aroutd", "demo", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = Proc(popen)
    proc.start_reader("stdout")
    proc.start_reader("stderr")
    try:
        line = proc.wait_for("    lr_live_")
        key = line.strip()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
        assert r.choices[0].message.content == "mock reply to 1 messages"
        assert f"curl -s http://127.0.0.1:{port}/v1/chat/completions" in proc.text()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        assert key not in (tmp_path / "demo-keys.toml").read_text()
    finally:
        assert proc.stop(signal.SIGINT) == 0


def test_settings_not_supported_yet_are_refused(tmp_path: Path) -> None:
    """Redis and x402 are parsed but refused, never silently ignored."""
    (tmp_path / "keys.toml").write_text("[tenants.t]\n")
    (tmp_path / "c.pem").write_text("x")
    cfg = tmp_path / "aroutd.toml"
    cfg.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nadmin_listen = ""\n'
        'tls_cert = "c.pem"\ntls_key = "c.pem"\n'
        'proxy_protocol = true\n\n[keys]\nfile = "keys.toml"\n\n'
        '[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n'
    )
    check = aroutd("check", "--config", str(cfg))
    assert check.returncode == 1
    for key in ("state.backend",):
        assert f"{cfg}: {key}:" in check.stderr
    serve = aroutd("serve", "--config", str(cfg))
    assert serve.returncode == 1
    assert "state.backend: only" in serve.stderr
