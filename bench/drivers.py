"""Drive the load generators against a Target: wrk for throughput, bench.loadgen otherwise.

Each call is one bounded run (requests and seconds) pinned to the client core,
returning the generator's JSON as a dict. ``wrk`` is used when installed (its
absence is detected once and the trio client takes over, flagged ``tool``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.procs import USABLE_CPUS, Child, Children, pin_available, which
from bench.settings import CLIENT_CPU, REPO_ROOT
from bench.targets import Target, python_env
from bench.upstream import REQUEST_BODY

__all__ = [
    "DriverError",
    "finish_held",
    "run_latency",
    "run_sse",
    "run_throughput",
    "start_idle",
    "start_timeline",
    "wrk_binary",
    "wrk_version",
]

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
MARGIN_S = 15.0


class DriverError(RuntimeError):
    """A load generator failed or printed no result."""


def wrk_binary() -> str | None:
    return which("wrk")


def wrk_version() -> str | None:
    binary = wrk_binary()
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout + done.stderr).split("[")[0].strip().removeprefix("wrk ").strip() or "?"


def _pin_client() -> None:
    if pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[CLIENT_CPU % len(USABLE_CPUS)]})


def _run(argv: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=REPO_ROOT,
            preexec_fn=_pin_client,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DriverError(f"{argv[0]} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise DriverError(f"{' '.join(argv[:3])} exited {done.returncode}: {done.stderr[-1500:]}")
    return done.stdout


def _loadgen_argv(
    mode: str, target: Target, path: str | None, headers: tuple[str, ...]
) -> list[str]:
    argv = [sys.executable, "-m", "bench.loadgen", mode, "--port", str(target.port)]
    argv += ["--path", path or target.path]
    for header in headers:
        argv += ["--header", header]
    return argv


def _last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise DriverError(f"no JSON result in: {stdout[-500:]!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_latency(
    target: Target,
    *,
    n: int,
    concurrency: int = 1,
    warmup: int = 0,
    seconds: float,
    headers: tuple[str, ...] | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """``n`` requests at ``concurrency`` over keep-alive connections (trio client)."""
    argv = _loadgen_argv("latency", target, path, target.headers if headers is None else headers)
    argv += ["--n", str(n), "--concurrency", str(concurrency), "--warmup", str(warmup)]
    argv += ["--seconds", str(seconds)]
    return _last_json(_run(argv, seconds + MARGIN_S, python_env()))


def run_sse(target: Target, *, streams: int, stagger_ms: float, seconds: float) -> dict[str, Any]:
    argv = _loadgen_argv("sse", target, None, target.headers)
    argv += ["--body", "sse", "--streams", str(streams), "--seconds", str(seconds)]
    argv += ["--stagger-ms", str(stagger_ms)]
    return _last_json(_run(argv, seconds + MARGIN_S, python_env()))


def run_throughput(
    target: Target,
    *,
    concurrency: int,
    seconds: int,
    max_requests: int,
    headers: tuple[str, ...] | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Keep-alive req/s with wrk (one thread), or the trio client when wrk is missing."""
    headers = target.headers if headers is None else headers
    binary = wrk_binary()
    if binary is None:
        result = run_latency(
            target,
            n=max_requests,
            concurrency=concurrency,
            warmup=concurrency,
            seconds=float(seconds),
            headers=headers,
            path=path,
        )
        return {
            "tool": "loadgen",
            "rps": result["rps"],
            "requests": result["count"],
            "errors": sum(result["errors"].values()),
            "non_2xx": sum(v for k, v in result["statuses"].items() if not k.startswith("2")),
            "latency_us": result["latency_us"],
        }
    url = f"http://127.0.0.1:{target.port}{path or target.path}"
    env = dict(os.environ)
    env |= {
        "BENCH_BODY": REQUEST_BODY.decode(),
        "BENCH_HEADERS": "\n".join(headers),
        "BENCH_MAX_REQUESTS": str(max_requests),
    }
    argv = [binary, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s"]
    stdout = _run([*argv, "-s", str(WRK_SCRIPT), url], seconds + MARGIN_S, env)
    lines = [line for line in stdout.splitlines() if line.startswith("WRKJSON ")]
    if not lines:
        raise DriverError(f"wrk printed no result: {stdout[-500:]!r}")
    raw = json.loads(lines[-1].removeprefix("WRKJSON "))
    errors = raw["errors"]
    duration_s = max(raw["duration_us"], 1) / 1e6
    return {
        "tool": "wrk",
        "rps": round(raw["requests"] / duration_s, 1),
        "requests": raw["requests"],
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "non_2xx": errors["status"],
        "capped": raw["capped"],
        "latency_us": raw["latency_us"],
    }


def start_idle(
    children: Children, target: Target, *, connections: int, seconds: float
) -> tuple[Child, dict[str, Any]]:
    """Open ``connections`` keep-alive connections (one request each) and hold them.

    Returns the loadgen child (holding them until its stdin gets a line) and its
    READY report. Finish with ``finish_held``.
    """
    argv = _loadgen_argv("idle", target, None, target.headers)
    argv += ["--connections", str(connections), "--concurrency", "64", "--seconds", str(seconds)]
    child = children.spawn(
        "idle-client",
        argv,
        cpu=CLIENT_CPU,
        env=python_env(),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout_pipe=True,
    )
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline().decode()
    if not line.startswith("READY "):
        child.stop()
        raise DriverError(f"idle client not ready: {line!r} {child.log_tail()}")
    ready: dict[str, Any] = json.loads(line.removeprefix("READY "))
    return child, ready


def finish_held(child: Child, timeout_s: float = 60.0) -> dict[str, Any]:
    assert child.proc.stdin is not None
    assert child.proc.stdout is not None
    try:
        child.proc.stdin.write(b"x\n")
        child.proc.stdin.close()
    except BrokenPipeError:
        pass
    out = child.proc.stdout.read().decode()
    child.proc.wait(timeout_s)
    return _last_json(out)


def start_timeline(children: Children, target: Target, *, seconds: float) -> Child:
    """A c=1 latency run with a per-request timeline, until stdin gets a line (or ``seconds``)."""
    argv = _loadgen_argv("latency", target, None, target.headers)
    argv += ["--n", "100000000", "--warmup", "50", "--seconds", str(seconds)]
    argv += ["--timeline", "--stop-on-stdin"]
    return children.spawn(
        "timeline-client",
        argv,
        cpu=CLIENT_CPU,
        env=python_env(),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout_pipe=True,
    )
