"""The parameter sets of ``python -m bench`` (smoke / quick / full) and the CPU layout.

CPU layout on a 2-core machine: the server under test (aroutd, the bare relay or
a peer) gets core 0 alone; the load generator and the upstream share core 1 (the
upstream is nginx, which is cheap). Direct runs keep the same placement, so the
difference between a proxied run and a direct one is the proxy's own cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALL_SCENARIOS",
    "CLIENT_CPU",
    "REPO_ROOT",
    "SERVER_CPU",
    "UPSTREAM_CPU",
    "Settings",
    "for_mode",
]

SERVER_CPU = 0
CLIENT_CPU = 1
UPSTREAM_CPU = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
ALL_SCENARIOS = ("a", "b", "c", "d", "e", "f")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    mode: str
    repeats: int
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    with_aroutd: bool = True
    with_relay: bool = True
    peers: bool = False
    plot: bool = False
    # (a) latency at c=1 (also used by (e) and the reload probe)
    latency_n: int = 2000
    latency_warmup: int = 200
    latency_seconds: float = 15.0
    # (b) keep-alive throughput
    rps_concurrency: tuple[int, ...] = (1, 8, 16, 64)
    rps_seconds: int = 3
    rps_max_requests: int = 200_000
    # (c) SSE
    sse_streams: int = 500
    sse_events: int = 50
    sse_interval_ms: float = 100.0  # 500 streams: 5,000 events/s through the proxy
    # (d) idle keep-alive connections
    idle_connections: int = 10_000
    # (e) auth methods
    auth_n: int = 1000
    # (f) big key table
    big_keys: int = 1_000_000
    ready_timeout_s: float = 30.0
    big_ready_timeout_s: float = 300.0

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def for_mode(mode: str) -> Settings:
    """The parameter set of a mode: "smoke" (seconds), "quick" (< 2 min), "full"."""
    if mode == "full":
        return Settings(mode="full", repeats=3, plot=True)
    if mode == "quick":
        return Settings(
            mode="quick",
            repeats=1,
            latency_n=1000,
            latency_warmup=100,
            latency_seconds=8.0,
            rps_seconds=2,
            sse_streams=100,
            sse_events=20,
            idle_connections=1000,
            auth_n=400,
            big_keys=100_000,
            big_ready_timeout_s=60.0,
        )
    if mode == "smoke":
        return Settings(
            mode="smoke",
            repeats=1,
            scenarios=("a", "b"),
            latency_n=200,
            latency_warmup=20,
            latency_seconds=5.0,
            rps_concurrency=(1, 8),
            rps_seconds=1,
            rps_max_requests=20_000,
        )
    raise ValueError(f"unknown mode {mode!r}")
