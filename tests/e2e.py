"""End-to-end support: the real `aroutd serve` and `aroutd mock-upstream` as subprocesses.

Ports are chosen by the kernel (port 0) and read back from each process's
first output line, so tests can run side by side. Every process is killed when
its context ends; stderr (the access log) is kept for assertions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .support import Keys

START_TIMEOUT_S = 30.0


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start_reader(self, stream_name: str) -> None:
        stream = getattr(self.popen, stream_name)

        def read() -> None:
            for line in stream:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()

        threading.Thread(target=read, daemon=True).start()

    def wait_for(self, predicate: str, timeout: float = START_TIMEOUT_S, start: int = 0) -> str:
        """The first line (from index ``start``) containing ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if predicate in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line with {predicate!r}; got:\n{''.join(self.lines[-30:])}"
                    )
                self._cond.wait(min(left, 0.1))

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def events(self, name: str) -> list[dict[str, object]]:
        out = []
        for line in self.text().splitlines():
            if line.startswith("{") and f'"event":"{name}"' in line:
                out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise
        return self.popen.returncode


def _spawn(args: list[str], reader: str, env: dict[str, str] | None = None) -> Proc:
    popen = subprocess.Popen(
        [sys.executable, "-m", "aroutd", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if reader == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    proc = Proc(popen)
    proc.start_reader("stderr")
    if reader == "stdout":
        proc.start_reader("stdout")
    return proc


@contextmanager
def mock_upstream(*extra: str) -> Iterator[tuple[Proc, int]]:
    proc = _spawn(["mock-upstream", "--listen", "127.0.0.1:0", *extra], "stdout")
    try:
        line = proc.wait_for("listening on http://")
        port = int(line.strip().rsplit(":", 1)[1])
        yield proc, port
    finally:
        proc.stop(signal.SIGKILL)


def write_config(tmp: Path, upstream_port: int, keys: Keys, *, extra_server: str = "") -> Path:
    (tmp / "keys.toml").write_text(keys.table())
    cfg = tmp / "aroutd.toml"
    cfg.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
admin_listen = ""
public_url = "http://127.0.0.1:8080"
drain_timeout_s = 10
{extra_server}

[keys]
file = "keys.toml"

[state]
path = "state/aroutd.db"

[wallet]
jwt_secret_file = "state/jwt.secret"

[upstreams.mock]
url = "http://127.0.0.1:{upstream_port}"
auth_header = "Authorization"
auth_value = "Bearer ${{MOCK_UPSTREAM_KEY}}"
read_timeout_s = 30

[[routes]]
pattern = "/v1*/models/*:*"
upstream = "mock"
provider = "google"

[[routes]]
pattern = "/v1/messages*"
upstream = "mock"
provider = "anthropic"

[[routes]]
prefix = "/v1/"
upstream = "mock"
provider = "openai"
""")
    return cfg


UPSTREAM_SECRET = "upstream-secret-never-logged"


@dataclass
class Daemon:
    proc: Proc
    port: int
    keys: Keys
    config: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def aroutd(config: Path, keys: Keys) -> Iterator[Daemon]:
    proc = _spawn(
        ["serve", "--config", str(config)], "stderr", {"MOCK_UPSTREAM_KEY": UPSTREAM_SECRET}
    )
    try:
        line = proc.wait_for('"event":"listening"')
        port = int(json.loads(line)["addresses"][0].rsplit(":", 1)[1])
        yield Daemon(proc, port, keys, config)
    finally:
        proc.stop(signal.SIGKILL)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m aroutd ARGS --config CONFIG`` (the store commands), with a bare
    environment: nothing from the test run's own leaks in."""
    return subprocess.run(
        [sys.executable, "-m", "aroutd", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        env={"PATH": "/usr/bin:/bin", "MOCK_UPSTREAM_KEY": "x"},
    )
