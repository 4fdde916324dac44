"""The things a scenario measures, as ``Target`` values: direct upstream, relay, aroutd, peers.

Each ``start_*`` spawns its process(es) through a ``Children`` stack (so they are
killed in a finally), waits until it answers, and returns the Target: where to
send requests, which auth headers to send, and which pid to measure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import nginx
from bench.aroutd_setup import AroutdFiles, ConfigOptions, write_aroutd_files
from bench.procs import Child, Children, free_port, wait_http, wait_port
from bench.settings import REPO_ROOT, SERVER_CPU, UPSTREAM_CPU
from bench.upstream import FIXED_BODY

__all__ = [
    "LABELS",
    "Target",
    "python_env",
    "start_aroutd",
    "start_fixed_upstream",
    "start_mock_facilitator",
    "start_mock_upstream",
    "start_relay",
    "start_sse_upstream",
]

LABELS = {
    "direct": "upstream direct",
    "relay": "bare relay",
    "aroutd": "aroutd",
    "nginx-proxy": "nginx map proxy",
    "asgi-proxy": "hypercorn+httpx",
    "litellm": "LiteLLM proxy",
    "facilitator": "fake x402 facilitator",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str  # a key of LABELS
    port: int
    pid: int  # the process to measure (RSS of its tree)
    headers: tuple[str, ...] = field(default=(), repr=False)  # "Name: value" auth lines
    kind: str = ""  # what serves it: "nginx", "trio", "hypercorn", ...
    path: str = "/v1/chat/completions"

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def _python(
    children: Children, name: str, args: list[str], cpu: int | None, prefix: Sequence[str] = ()
) -> Child:
    argv = [*prefix, sys.executable, *args]
    return children.spawn(name, argv, cpu=cpu, env=python_env(), cwd=REPO_ROOT)


def start_fixed_upstream(
    children: Children, work: Path, *, name: str = "upstream", cpu: int | None = UPSTREAM_CPU
) -> Target:
    """nginx answering the fixed JSON when installed, else the trio upstream."""
    port = free_port()
    binary = nginx.nginx_binary()
    if binary is not None:
        prefix = work / f"nginx-{name}-{port}"
        argv = nginx.argv(binary, prefix, nginx.upstream_config(prefix, port, FIXED_BODY))
        child = children.spawn(name, argv, cpu=cpu)
        kind = "nginx"
    else:
        child = _python(children, name, ["-m", "bench.upstream", "--port", str(port)], cpu)
        kind = "trio"
    wait_port(child, port, 10.0)
    return Target(name="direct", port=port, pid=child.pid, kind=kind)


def start_sse_upstream(
    children: Children, *, events: int, interval_ms: float, cpu: int | None = UPSTREAM_CPU
) -> Target:
    port = free_port()
    args = ["-m", "bench.upstream", "--port", str(port), "--sse-events", str(events)]
    child = _python(children, "sse-upstream", [*args, "--sse-interval-ms", str(interval_ms)], cpu)
    wait_port(child, port, 10.0)
    return Target(name="direct", port=port, pid=child.pid, kind="trio-sse")


def start_mock_upstream(children: Children, *, cpu: int | None = UPSTREAM_CPU) -> Target:
    """The bundled hypercorn mock upstream (``aroutd mock-upstream``)."""
    port = free_port()
    args = ["-m", "aroutd", "mock-upstream", "--listen", f"127.0.0.1:{port}"]
    child = _python(children, "mock-upstream", args, cpu)
    wait_port(child, port, 20.0)
    return Target(name="direct", port=port, pid=child.pid, kind="aroutd mock-upstream")


def start_mock_facilitator(children: Children, *, cpu: int | None = UPSTREAM_CPU) -> Target:
    """The fake x402 facilitator (``aroutd mock-facilitator``): it answers at once."""
    port = free_port()
    args = ["-m", "aroutd", "mock-facilitator", "--listen", f"127.0.0.1:{port}"]
    child = _python(children, "mock-facilitator", args, cpu)
    wait_port(child, port, 20.0)
    return Target(
        name="facilitator", port=port, pid=child.pid, kind="aroutd mock-facilitator", path="/verify"
    )


def start_relay(
    children: Children, upstream: Target, api_key: str, *, cpu: int | None = SERVER_CPU
) -> Target:
    port = free_port()
    env = python_env() | {"BENCH_KEY": api_key}
    argv = [sys.executable, "-m", "bench.bare_relay", str(port), str(upstream.port)]
    child = children.spawn(f"relay-{port}", argv, cpu=cpu, env=env, cwd=REPO_ROOT)
    wait_port(child, port, 10.0)
    return Target(
        name="relay",
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {api_key}",),
        kind="trio+h11",
    )


def start_aroutd(
    children: Children,
    directory: Path,
    upstream: Target,
    api_key: str,
    *,
    max_connections: int = 12_000,
    ready_timeout_s: float = 30.0,
    cpu: int | None = SERVER_CPU,
    port: int | None = None,
    options: ConfigOptions | None = None,
    prefix: Sequence[str] = (),
) -> tuple[Target, AroutdFiles, float, Child]:
    """aroutd on a temp config (see aroutd_setup); returns the target, its files,
    the seconds from spawn until GET /healthz answered 200, and the child.

    ``port``: a given API port (instances with ``options.reuse_port`` share one); else a
    free one. With ``options.admin_port`` readiness is asked there: on a shared port
    another instance may answer. ``prefix``: a command that runs the interpreter (valgrind,
    see bench.callgrind)."""
    port = port or free_port()
    files = write_aroutd_files(
        directory,
        port=port,
        upstream_port=upstream.port,
        api_key=api_key,
        max_connections=max_connections,
        options=options,
    )
    argv = ["-m", "aroutd", "serve", "--config", str(files.config)]
    child = _python(children, f"aroutd-{directory.name}-{port}", argv, cpu, prefix)
    ready_port = options.admin_port if options and options.admin_port else port
    startup_s = wait_http(child, ready_port, "/healthz", ready_timeout_s)
    target = Target(
        name="aroutd",
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {api_key}",),
        kind="trio+h11",
    )
    return target, files, startup_s, child
