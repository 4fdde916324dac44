"""A redis-server for the benches (the system's /usr/bin/redis-server), on 127.0.0.1.

Started as ``tests/redisserver.py`` starts the tests' one (a free port, its own folder,
no RDB snapshots, ``appendonly yes``), but as a bench child: pinned, in its own session,
logging to the run's log folder and killed by ``Children.close``. The fsync policy is a
parameter: the benches use ``everysec`` (Redis's default for an AOF, and what a
deployment that does not fsync on every write runs); the tests use ``always``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import Children, ReadyTimeout, free_port, wait_port, which

__all__ = ["RedisInfo", "redis_binary", "redis_facts", "start_redis"]

READY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisInfo:
    port: int
    pid: int
    appendfsync: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str | None:
    return which("redis-server")


def start_redis(
    children: Children, folder: Path, *, cpu: int | None, appendfsync: str = "everysec"
) -> RedisInfo:
    """redis-server in ``folder`` (its AOF there), answering PING when this returns."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", appendfsync]
    argv += ["--protected-mode", "no", "--daemonize", "no"]
    child = children.spawn("redis-server", argv, cpu=cpu)
    wait_port(child, port, READY_TIMEOUT_S)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:  # e.g. LOADING
                if time.monotonic() > deadline:
                    raise ReadyTimeout(f"redis-server: no PONG: {child.log_tail()}") from None
            time.sleep(0.02)
    finally:
        client.close()
    return RedisInfo(port=port, pid=child.pid, appendfsync=appendfsync)


def redis_facts(info: RedisInfo) -> dict[str, object]:
    """What the server says of itself: version, AOF settings, keys in db 0, memory."""
    with redis.Redis(
        host="127.0.0.1", port=info.port, socket_timeout=2, decode_responses=True
    ) as client:
        server, persistence = client.info("server"), client.info("persistence")
        config = client.config_get("append*")
        return {
            "version": server.get("redis_version"),
            "aof_enabled": persistence.get("aof_enabled"),
            "appendonly": config.get("appendonly"),
            "appendfsync": config.get("appendfsync"),
            "keys": client.dbsize(),
            "used_memory_human": client.info("memory").get("used_memory_human"),
        }
