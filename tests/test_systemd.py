"""systemd integration end to end: sd_notify messages and socket activation (SPEC §2, §11)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aroutd.shell.sdnotify import listen_sockets, watchdog_interval_s

from .e2e import UPSTREAM_SECRET, Proc, write_config
from .support import Keys

ENV = {**os.environ, "MOCK_UPSTREAM_KEY": UPSTREAM_SECRET}


def _receive_all(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m for m in got):
            return got
    raise AssertionError(f"no {until!r} in {got}")


def test_notify_ready_reloading_stopping_and_watchdog(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        cfg = write_config(tmp_path, 9, Keys())
        env = {**ENV, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        env.pop("WATCHDOG_PID", None)
        popen = subprocess.Popen(
            [sys.executable, "-m", "aroutd", "serve", "--config", str(cfg)],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            ready = _receive_all(sock, "READY=1")
            assert any("STATUS=serving 5 keys" in m for m in ready)
            assert any(m == "WATCHDOG=1" for m in _receive_all(sock, "WATCHDOG=1", 2))
            popen.send_signal(signal.SIGHUP)
            reload = _receive_all(sock, "READY=1")
            assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in reload)
            popen.send_signal(signal.SIGTERM)
            assert any("STOPPING=1" in m for m in _receive_all(sock, "STOPPING=1"))
            assert popen.wait(15) == 0
        finally:
            popen.kill()
            popen.wait()


def test_socket_activation_replaces_listen(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    cfg = write_config(tmp_path, 9, Keys())
    cfg.write_text(_empty_listen(cfg.read_text()))  # systemd's sockets are all it has
    fd = listener.fileno()
    # what systemd does: the socket at descriptor 3, LISTEN_PID = the pid that execs aroutd
    launch = (
        f"import os, sys; os.dup2({fd}, 3); os.close({fd}); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        f"argv = [sys.executable, '-m', 'aroutd', 'serve', '--config', {str(cfg)!r}]; "
        "os.execv(sys.executable, argv)"
    )
    popen = subprocess.Popen(
        [sys.executable, "-c", launch], pass_fds=(fd,), stderr=subprocess.PIPE, text=True, env=ENV
    )
    listener.close()
    proc = Proc(popen)
    proc.start_reader("stderr")
    try:
        line = proc.wait_for('"event":"listening"')
        assert f'"addresses":["127.0.0.1:{port}"]' in line
        r = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
    finally:
        assert proc.stop() == 0


def _empty_listen(config: str) -> str:
    lines = config.splitlines(keepends=True)
    [at] = [i for i, line in enumerate(lines) if line.startswith("listen = ")]
    lines[at] = "listen = []\n"
    return "".join(lines)


def test_an_empty_listen_without_systemds_sockets_is_refused_at_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 9, Keys())
    cfg.write_text(_empty_listen(cfg.read_text()))
    out = subprocess.run(
        [sys.executable, "-m", "aroutd", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={k: v for k, v in ENV.items() if not k.startswith("LISTEN_")},
        timeout=60,
    )
    assert out.returncode == 1
    assert '"event":"config_error"' in out.stderr
    assert "server.listen: empty, and systemd passed no sockets" in out.stderr


@pytest.mark.parametrize(
    ("env", "count"),
    [
        pytest.param({}, 0, id="none"),
        pytest.param({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, 0, id="other-pid"),
        pytest.param({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, 0, id="garbage"),
    ],
)
def test_listen_sockets_only_for_this_process(env: dict[str, str], count: int) -> None:
    assert len(listen_sockets(dict(env))) == count


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None


def _unit_commands(unit: Path, binary: Path) -> dict[str, list[str]]:
    """ExecStartPre / ExecStart of a unit file, with the installed binary's real path."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ExecStartPre", "ExecStart"):
            out[key] = [str(binary) if w == "/usr/local/bin/aroutd" else w for w in value.split()]
    return out


@pytest.mark.slow
def test_install_then_the_shipped_unit_starts_the_shipped_config(tmp_path: Path) -> None:
    """scripts/install --root, then the unit's own command lines with what systemd gives them."""
    repo = Path(__file__).resolve().parent.parent
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AROUTD_", "VIRTUAL_ENV"))}
    subprocess.run(
        ["bash", str(repo / "scripts" / "install"), "--root", str(root)],
        check=True,
        env={**env, "PYTHON": sys.executable},
        timeout=600,
    )
    etc = root / "etc" / "aroutd"
    binary = root / "usr" / "local" / "bin" / "aroutd"
    assert (root / "usr/share/doc/aroutd/README.md").is_file()
    assert (etc / "credentials").stat().st_mode & 0o777 == 0o700
    before = sorted(p.name for p in etc.rglob("*"))
    commands = _unit_commands(root / "etc/systemd/system/aroutd.service", binary)

    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    for name in ("openai_api_key", "anthropic_api_key", "gemini_api_key"):
        (creds / name).write_text(f"secret-{name}")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    notify_path = str(tmp_path / "notify.sock")
    unit_env = {
        **env,
        "CONFIGURATION_DIRECTORY": str(etc),
        "STATE_DIRECTORY": str(state),
        "CREDENTIALS_DIRECTORY": str(creds),
        "NOTIFY_SOCKET": notify_path,
    }
    check = subprocess.run(commands["ExecStartPre"], env=unit_env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    listener = socket.socket()  # socket activation, as aroutd.socket would: no fixed port
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port, fd = listener.getsockname()[1], listener.fileno()
    launch = (
        f"import os; os.dup2({fd}, 3); os.close({fd}); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        f"os.execv({commands['ExecStart'][0]!r}, {commands['ExecStart']!r})"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        popen = subprocess.Popen(
            [sys.executable, "-c", launch], pass_fds=(fd,), env=unit_env, stderr=subprocess.DEVNULL
        )
        listener.close()
        try:
            assert any("READY=1" in m for m in _receive_all(notify, "READY=1"))
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            denied = httpx.get(f"http://127.0.0.1:{port}/v1/models")
            assert denied.status_code == 401
            popen.send_signal(signal.SIGTERM)
            assert popen.wait(15) == 0
        finally:
            popen.kill()
            popen.wait()
    # state went to $STATE_DIRECTORY, nothing was written next to the (read-only) config
    assert sorted(p.name for p in state.iterdir()) >= ["aroutd.db", "jwt.secret"]
    assert (state / "jwt.secret").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in etc.rglob("*")) == before

    (etc / "aroutd.toml").write_text((etc / "aroutd.toml").read_text() + "\n# mine\n")
    subprocess.run(
        ["bash", str(repo / "scripts" / "install"), "--root", str(root)],
        check=True, env={**env, "PYTHON": sys.executable}, timeout=600,
    )  # fmt: skip
    assert (etc / "aroutd.toml").read_text().endswith("# mine\n")  # an upgrade keeps it
