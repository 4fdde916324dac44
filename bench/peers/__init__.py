"""Peers for ``python -m bench --peers``: each installed on demand into its own venv under
bench/.peers/ (gitignored), started pinned to the server core, returned as a Target.

- nginx-proxy: the system nginx as a reverse proxy checking a key with a ``map`` (C reference).
- asgi-proxy: bench/peers/asgi_proxy.py on hypercorn + httpx (venv bench/.peers/asgi).
- litellm: the LiteLLM proxy with a master key (venv bench/.peers/litellm).

A peer that cannot be installed or started is skipped with a note, never fatal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench import nginx
from bench.procs import Children, free_port, wait_http, wait_port
from bench.settings import SERVER_CPU
from bench.targets import Target

__all__ = ["PEERS_DIR", "start_asgi_proxy", "start_litellm", "start_nginx_proxy", "start_peers"]

PEERS_DIR = Path(__file__).resolve().parent.parent / ".peers"
HERE = Path(__file__).resolve().parent
LITELLM_MASTER_KEY = "sk-bench-master-key"
INSTALL_TIMEOUT_S = 900.0


def _venv(name: str, packages: list[str]) -> Path:
    """bench/.peers/NAME with ``packages`` installed (once; a marker file records success)."""
    venv = PEERS_DIR / name
    marker = venv / ".bench-installed"
    wanted = " ".join(packages)
    if marker.exists() and marker.read_text() == wanted:
        return venv
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, *packages], check=True, timeout=INSTALL_TIMEOUT_S)
    marker.write_text(wanted)
    return venv


def start_nginx_proxy(children: Children, work: Path, upstream: Target, key: str) -> Target:
    binary = nginx.nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
    port = free_port()
    prefix = work / f"nginx-proxy-{port}"
    argv = nginx.argv(binary, prefix, nginx.proxy_config(prefix, port, upstream.port, key))
    child = children.spawn("nginx-proxy", argv, cpu=SERVER_CPU)
    wait_port(child, port, 10.0)
    return Target(
        name="nginx-proxy",
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {key}",),
        kind=nginx.version(binary),
    )


def start_asgi_proxy(children: Children, upstream: Target, key: str) -> Target:
    venv = _venv("asgi", ["hypercorn", "httpx"])
    port = free_port()
    env = dict(os.environ) | {
        "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream.port}",
        "BENCH_KEY": key,
    }
    argv = [str(venv / "bin" / "hypercorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    child = children.spawn(
        "asgi-proxy", [*argv, "asgi_proxy:app"], cpu=SERVER_CPU, env=env, cwd=HERE
    )
    wait_port(child, port, 30.0)
    return Target(
        name="asgi-proxy",
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {key}",),
        kind="hypercorn+httpx",
    )


def start_litellm(children: Children, work: Path, upstream: Target) -> Target:
    venv = _venv("litellm", ["litellm[proxy]"])
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{upstream.port}/v1\n"
        "      api_key: upstream-secret\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = dict(os.environ) | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    argv = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", "1"]
    child = children.spawn("litellm", argv, cpu=SERVER_CPU, env=env, cwd=work)
    wait_http(child, port, "/health/liveliness", 180.0)
    return Target(
        name="litellm",
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {LITELLM_MASTER_KEY}",),
        kind="litellm",
    )


def start_peers(
    children: Children, work: Path, upstream: Target, key: str, notes: list[str]
) -> list[Target]:
    """Every peer that can be had; a failure becomes a note."""
    peers = []
    starters: dict[str, Callable[[], Target]] = {
        "nginx-proxy": lambda: start_nginx_proxy(children, work, upstream, key),
        "asgi-proxy": lambda: start_asgi_proxy(children, upstream, key),
        "litellm": lambda: start_litellm(children, work, upstream),
    }
    for name, start in starters.items():
        try:
            peers.append(start())
        except Exception as exc:
            notes.append(f"peer {name} skipped: {type(exc).__name__}: {str(exc)[-300:]}")
    return peers
