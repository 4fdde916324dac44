"""The command line (SPEC §1) as a subprocess: check, keys new, keys hash, demo (from the
checkout, and from a wheel installed in a fresh venv)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
import openai
import pytest
from packaging.requirements import Requirement

from aroutd.config.parse import parse_config
from aroutd.demo import default_state_dir, packaged_config
from aroutd.keytable.table import parse_keytable

from .e2e import Proc
from .support import reference_credentials, unused_port

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = Path(tempfile.mkdtemp(prefix="aroutd-credentials-"))  # what systemd would load


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
        env={**os.environ, **reference_credentials(CREDENTIALS)},
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


@dataclass
class Demo:
    proc: Proc
    base: str  # the API, as the banner prints it
    admin: str  # the admin listener
    key: str
    mgmt: str


@contextmanager
def running_demo(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[Demo]:
    """`aroutd demo` until its banner is out; it must stop with 0 on SIGINT."""
    popen = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
    )
    proc = Proc(popen)
    proc.start_reader("stdout")
    proc.start_reader("stderr")
    try:
        key = proc.wait_for("    lr_live_").strip()
        mgmt = proc.wait_for("    lr_mgmt_").strip()
        base = re.search(r"aroutd demo is running on (http://\S+)", proc.text())
        admin = re.search(r"admin listener: (http://\S+) \(/healthz, /metrics\)", proc.text())
        assert base is not None and admin is not None, proc.text()
        yield Demo(proc, base.group(1), admin.group(1), key, mgmt)
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    assert proc.stop(signal.SIGINT) == 0, proc.text()


def _check_demo(demo: Demo, key_table: Path) -> None:
    client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=demo.key, max_retries=0)
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert r.choices[0].message.content == "mock reply to 1 messages"
    assert client.responses.create(model="gpt-4o-mini", input="Hello").output_text == (
        "mock reply to 1 messages"
    )
    assert f"curl -s {demo.base}/v1/chat/completions" in demo.proc.text()
    assert httpx.get(f"{demo.base}/v1/models").status_code == 401
    health = httpx.get(f"{demo.admin}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "store": "ok"})
    assert "aroutd_" in httpx.get(f"{demo.admin}/metrics").text
    table = key_table.read_text()
    assert demo.key not in table
    assert hashlib.sha256(demo.key.encode()).hexdigest() in table
    assert f"key table:      {key_table}" in demo.proc.text()
    # the management key of the banner makes a narrower key that works at once
    assert f"curl -s {demo.base}/api/v1/keys" in demo.proc.text()
    made = httpx.post(
        f"{demo.base}/api/v1/keys",
        headers={"Authorization": f"Bearer {demo.mgmt}"},
        json={"name": "ci", "allowed_models": ["openai/gpt-4o-mini"], "limit": 5},
    )
    assert made.status_code == 201, made.text
    narrow = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=made.json()["key"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        narrow.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert demo.mgmt not in table


def test_the_packaged_demo_config_keeps_the_documented_addresses(tmp_path: Path) -> None:
    text = packaged_config().read_text(encoding="utf-8")
    cfg = parse_config(
        text, path=tmp_path / "demo.toml", cwd=tmp_path, environ={}, read_file=Path.read_bytes
    )
    assert cfg.server.listen == (("127.0.0.1", 8080),)
    assert cfg.server.admin_listen == ("127.0.0.1", 9901)
    assert [(u.host, u.port) for u in cfg.upstreams.values()] == [("127.0.0.1", 9999)]
    # its relative paths land in the folder it is anchored in, never beside the package
    assert cfg.keys.file == tmp_path / "demo-keys.toml"
    assert cfg.state.path.parent == tmp_path / "state"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, "/home/u/.local/state/aroutd-demo", id="default"),
        pytest.param({"XDG_STATE_HOME": "/var/x"}, "/var/x/aroutd-demo", id="xdg"),
        pytest.param({"XDG_STATE_HOME": ""}, "/home/u/.local/state/aroutd-demo", id="empty"),
        pytest.param(
            {"XDG_STATE_HOME": "rel"}, "/home/u/.local/state/aroutd-demo", id="relative-ignored"
        ),
    ],
)
def test_default_state_dir(environ: dict[str, str], expected: str) -> None:
    assert default_state_dir(environ, Path("/home/u")) == Path(expected)


def test_demo_prints_a_key_that_works(tmp_path: Path) -> None:
    """The README's first quick-start command (scripts/demo: the packaged config, --dir)."""
    flags = [f"--{f}=127.0.0.1:0" for f in ("listen", "admin-listen", "mock-listen")]
    argv = [sys.executable, "-m", "aroutd", "demo", "--dir", str(tmp_path / "d"), *flags]
    with running_demo(argv) as demo:
        _check_demo(demo, tmp_path / "d" / "demo-keys.toml")
        assert (tmp_path / "d" / "state" / "demo.db").is_file()


def test_demo_runs_your_own_config(tmp_path: Path) -> None:
    """--config: the mock starts where its upstream points, paths are relative to it."""
    port, admin_port, mock_port = _free_port(), _free_port(), _free_port()
    text = packaged_config().read_text(encoding="utf-8")
    for old, new in (("8080", port), ("9901", admin_port), ("9999", mock_port)):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    with running_demo([sys.executable, "-m", "aroutd", "demo", "--config", str(cfg)]) as demo:
        assert (demo.base, demo.admin) == (
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{admin_port}",
        )
        assert f"mock upstream:  http://127.0.0.1:{mock_port}" in demo.proc.text()
        _check_demo(demo, tmp_path / "demo-keys.toml")


def _run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert out.returncode == 0, f"{argv}:\n{out.stdout}\n{out.stderr}"
    return out


def _build_requires_met() -> bool:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for text in requires:
        req = Requirement(text)
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                return False
        except PackageNotFoundError:
            return False
    return True


@pytest.mark.slow
def test_demo_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    """`pip install` the wheel into a fresh venv, then `aroutd demo` far from any checkout:
    the config comes from the package data, the key table and state go to
    $XDG_STATE_HOME/aroutd-demo, and nothing is written into the installed package."""
    src = tmp_path / "src"  # a clean copy: no build/ or egg-info appears in the checkout
    shutil.copytree(ROOT / "aroutd", src / "aroutd", ignore=shutil.ignore_patterns("__pycache__"))
    for top in ROOT.iterdir():  # pyproject.toml, README.md, a license file, ...
        if top.is_file():
            shutil.copy2(top, src / top.name)
    # with our own setuptools when it meets [build-system] requires, else as `pip install`
    # does: in an isolated build environment, from the package index
    offline = ["--no-build-isolation"] if _build_requires_met() else []
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", *offline, "-w", str(tmp_path / "dist"), str(src)])
    (wheel,) = (tmp_path / "dist").glob("aroutd-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    # Its dependencies are this environment's: a .pth line adds our site-packages after the
    # venv's own (so the wheel's aroutd wins; our editable aroutd's finder, started by a .pth
    # file of ours, does not run from a path added this way). Written after the install, so
    # pip never saw our aroutd.
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site.stdout.strip()) / "parent-env.pth").write_text("\n".join(ours) + "\n")
    elsewhere, state, home = tmp_path / "elsewhere", tmp_path / "xdg-state", tmp_path / "home"
    for folder in (elsewhere, home):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"XDG_STATE_HOME": str(state), "HOME": str(home)}
    where = _run(
        [str(python), "-c", "import aroutd; print(aroutd.__file__)"], cwd=elsewhere, env=env
    )
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), package
    before = sorted(package.rglob("*"))

    flags = [f"--{f}=127.0.0.1:0" for f in ("listen", "admin-listen", "mock-listen")]
    with running_demo(
        [str(venv / "bin" / "aroutd"), "demo", *flags], cwd=elsewhere, env=env
    ) as demo:
        assert f"config:         {package / 'demo_config' / 'demo.toml'}" in demo.proc.text()
        r = httpx.post(
            f"{demo.base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {demo.key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "mock reply to 1 messages"
        health = httpx.get(f"{demo.admin}/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "store": "ok"})
    folder = state / "aroutd-demo"
    assert demo.key not in (folder / "demo-keys.toml").read_text()
    assert (folder / "state" / "demo.db").is_file()
    assert list(elsewhere.iterdir()) == []
    assert sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts) == [
        p for p in before if "__pycache__" not in p.parts
    ]


def test_an_unreachable_redis_stops_serve_without_showing_its_password(tmp_path: Path) -> None:
    (tmp_path / "keys.toml").write_text("[tenants.t]\n")
    cfg = tmp_path / "aroutd.toml"
    port = unused_port()
    cfg.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nadmin_listen = ""\n\n[keys]\nfile = "keys.toml"\n\n'
        f'[state]\nbackend = "redis"\nredis_url = "redis://:hunter2@127.0.0.1:{port}/0"\n'
    )
    check = aroutd("check", "--config", str(cfg))
    assert check.returncode == 0, check.stderr  # check does not connect
    serve = aroutd("serve", "--config", str(cfg))
    assert serve.returncode == 1
    assert "cannot reach the state store" in serve.stderr
    assert "hunter2" not in serve.stderr + serve.stdout
