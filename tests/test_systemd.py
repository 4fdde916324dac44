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
    cfg = write_config(tmp_path, 9, Keys())  # its listen is 127.0.0.1:0, never used here
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
