"""A real redis-server for the tests (Debian's /usr/bin/redis-server), on 127.0.0.1.

:func:`redis_server` starts one on a free port in its own folder, with the settings the
store's durability relies on (``appendonly yes``, ``appendfsync always``, no RDB
snapshots), and kills it at the end. :meth:`RedisServer.kill` (SIGKILL, as a crash) and
:meth:`RedisServer.start` restart the same server: same folder, same port, same AOF.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import trustme

__all__ = ["REDIS_SERVER", "RedisServer", "redis_server", "requires_redis"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 5.0
requires_redis = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process in ``folder``; ``url`` reaches it (with the password)."""

    def __init__(
        self,
        folder: Path,
        password: str | None = None,
        *,
        replica_of: int | None = None,
        tls: bool = False,
    ) -> None:
        self.folder = folder
        self.password = password
        self.replica_of = replica_of  # the primary's port on 127.0.0.1
        self.tls = tls  # TLS only (a trustme CA in folder), and rediss:// URLs
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{self.password}@"
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.folder / 'ca.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def plain_url(self) -> str:
        """The URL without the password (nor TLS)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _tls_args(self) -> list[str]:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(self.folder / "ca.pem")
        cert.private_key_pem.write_to_path(self.folder / "key.pem")
        cert.cert_chain_pems[0].write_to_path(self.folder / "cert.pem")
        return [
            *("--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(self.folder / "cert.pem")),
            *("--tls-key-file", str(self.folder / "key.pem")),
        ]

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        assert self.proc is None, "already running"
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        if self.tls:
            args += self._tls_args()  # after --port: the last one counts
        args += ["--dir", str(self.folder), "--save", "", "--appendonly", "yes"]
        args += ["--appendfsync", "always", "--protected-mode", "no"]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once
        args += ["--logfile", str(self.folder / "redis.log")]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read() if self.proc.stderr else b""
                    log = (self.folder / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server exited: {err!r}\n{log}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)  # an outside process: nothing to wait on but its port
        finally:
            client.close()

    def wait_for_replicas(self, n: int) -> None:
        """Until ``n`` replicas are online (so WAIT can count them)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as c:
            while True:
                info = c.info("replication")
                online = [
                    k
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                ]
                if len(online) >= n:
                    return
                assert time.monotonic() < deadline, f"replicas not online: {info}"
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing flushed that was not already)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None

    def client(self) -> redis.Redis:
        """A plain redis-py client, for looking at what the store wrote."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=2,
            ssl=self.tls,
            ssl_ca_certs=str(self.folder / "ca.pem") if self.tls else None,
        )


@contextmanager
def redis_server(
    folder: Path, password: str | None = None, *, tls: bool = False
) -> Iterator[RedisServer]:
    """A started server in ``folder``, killed on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder, password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.kill()
