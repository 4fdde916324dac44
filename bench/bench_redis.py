"""Redis benchmark: the Redis state store's cost on the request path, and two instances.

    python -m bench.bench_redis [--quick] [--keep] [--out DIR] [--no-pin]

One process tree on loopback, laid out as ``python -m bench``: the fixed upstream (nginx
when installed, else ``bench.upstream``) and a redis-server started in the work dir
(``appendonly yes``, ``appendfsync everysec``, no RDB) on core 1 with this process and
the clients; the bare relay and the aroutd instances under test on core 0. Every aroutd
has the same key table and is sent the same bench API key. Measured, R repeats, the
runs of a repeat interleaved in an order rotated per repeat (median, min–max):

1. one aroutd on sqlite next to one on Redis (core 0): c=1 latency of the small chat
   request of scenario (a), added p50/p99 over the upstream direct, per repeat; req/s at
   c=16 (``drivers.run_throughput``: wrk, else the trio client; bounded in requests and
   seconds); ratios redis/sqlite against the issue's budget (within 10%: added p50
   ratio <= 1.10, req/s ratio >= 0.90, stated met or not), redis/relay, sqlite/relay;
2. two aroutd on Redis with ``reuse_port = true`` on ONE port, pinned to core 0 and core
   1, next to the one on core 0: req/s at c=16 and c=32, ratio two/one (the issue aims
   at 1.8x). With two cores the second instance shares core 1 with the clients, the
   upstream and redis-server: every run records the CPU of each of them and of the
   processes outside this tree ("other load").

Checks: every answer of the runs is 200 (loadgen: its statuses; wrk: no error, no status
>= 400), and on the server side every instance's ``aroutd_requests_total`` (its admin
``/metrics``) counts 200 only, both instances on the shared port having served some.
Exit status 1 when a check fails (a budget not met is a result, not a failure). Output:
the markdown report on stdout, and ``bench/out/redis-DATE/report.json``. Full: about 6
minutes; ``--quick``: about 70 s.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import drivers
from bench.aroutd_setup import ConfigOptions, new_api_key
from bench.compare import (
    Condition,
    budget,
    figure,
    interleaved,
    latency_run,
    ratio_figure,
    run_ok,
    script_main,
    summarize_latency,
)
from bench.procs import Children, cpu_counters, free_port, other_load, tree_cpu_s
from bench.redis_report import render
from bench.redis_server import RedisInfo, redis_facts, start_redis
from bench.settings import CLIENT_CPU, REPO_ROOT, SERVER_CPU, UPSTREAM_CPU
from bench.targets import Target, start_aroutd, start_fixed_upstream, start_relay

__all__ = ["main"]

SECOND_CPU = CLIENT_CPU  # 2 cores: the second instance shares core 1 with the load
LATENCY = ("direct", "relay", "sqlite", "redis")
RPS = {16: ("relay", "sqlite", "redis", "two"), 32: ("redis", "two")}
PAIRS = (("redis", "sqlite"), ("redis", "relay"), ("sqlite", "relay"))
INSTANCES = ("sqlite", "redis", "two-a", "two-b")  # the aroutd processes
ADDED_P50_BUDGET = 1.10  # the issue: the Redis store within 10% of sqlite
RPS_BUDGET = 0.90
SCALE_AIM = 1.8  # the issue: two instances on one port, 1.8x one
REQUESTS_TOTAL = re.compile(r'^aroutd_requests_total\{status="(\d+)"[^}]*\} (\d+)$', re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    name: str
    repeats: int
    latency_n: int  # c=1 requests per latency run
    latency_warmup: int
    latency_seconds: float  # bound of one latency run
    rps_seconds: int  # length of one req/s run
    rps_max_requests: int  # cap of one req/s run
    concurrencies: tuple[int, ...] = (16, 32)
    appendfsync: str = "everysec"


MODES = {
    "full": Mode(
        name="full",
        repeats=7,
        latency_n=2000,
        latency_warmup=200,
        latency_seconds=15.0,
        rps_seconds=5,
        rps_max_requests=300_000,
    ),
    "quick": Mode(
        name="quick",
        repeats=3,
        latency_n=800,
        latency_warmup=100,
        latency_seconds=8.0,
        rps_seconds=2,
        rps_max_requests=100_000,
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Condition):
    key: str  # "direct", "relay", "sqlite", "redis" or "two"
    concurrency: int = 1  # 1: a c=1 latency run (trio client); else req/s (wrk)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """What ``start_all`` started: targets by key, pids to watch, admin ports, Redis."""

    targets: dict[str, Target]
    watch: dict[str, int]  # name -> pid whose CPU every run records
    admin: dict[str, int]  # aroutd instance -> its admin port (/metrics)
    redis: RedisInfo
    startup_s: dict[str, float] = field(default_factory=dict)


def _aroutd(
    children: Children,
    work: Path,
    name: str,
    upstream: Target,
    api_key: str,
    *,
    cpu: int,
    port: int | None = None,
    redis_url: str = "",
) -> tuple[Target, int, float]:
    """One aroutd with an admin listener (``/metrics``); its target, admin port, startup."""
    options = ConfigOptions(
        admin_port=free_port(), reuse_port=port is not None, redis_url=redis_url
    )
    target, _files, startup_s, _child = start_aroutd(
        children, work / name, upstream, api_key, cpu=cpu, port=port, options=options
    )
    return target, options.admin_port, startup_s


def start_all(children: Children, work: Path, mode: Mode, api_key: str) -> Layout:
    upstream = start_fixed_upstream(children, work)
    redis = start_redis(
        children, work / "redis-server", cpu=UPSTREAM_CPU, appendfsync=mode.appendfsync
    )
    relay = start_relay(children, upstream, api_key)
    targets = {"direct": upstream, "relay": relay}
    admin: dict[str, int] = {}
    startup: dict[str, float] = {}
    shared = free_port()
    specs = {
        "sqlite": (SERVER_CPU, None, ""),
        "redis": (SERVER_CPU, None, redis.url),
        "two-a": (SERVER_CPU, shared, redis.url),
        "two-b": (SECOND_CPU, shared, redis.url),
    }
    for name, (cpu, port, url) in specs.items():
        target, admin[name], startup[name] = _aroutd(
            children, work, name, upstream, api_key, cpu=cpu, port=port, redis_url=url
        )
        targets[name] = target
    targets["two"] = targets["two-a"]  # the shared port; either instance answers
    watch = {k: targets[k].pid for k in INSTANCES} | {"redis-server": redis.pid}
    watch |= {"upstream": upstream.pid, "relay": relay.pid}
    return Layout(targets=targets, watch=watch, admin=admin, redis=redis, startup_s=startup)


def conditions(targets: dict[str, Target], concurrencies: tuple[int, ...]) -> list[Run]:
    def headers(key: str) -> tuple[str, ...]:
        return targets[key].headers

    runs = [
        Run(name=k, key=k, label=f"{k}, c=1", target=targets[k], headers=headers(k))
        for k in LATENCY
    ]
    for c in concurrencies:
        runs += [
            Run(
                name=f"c{c}:{k}",
                key=k,
                label=f"{k}, req/s at c={c}",
                target=targets[k],
                headers=headers(k),
                concurrency=c,
            )
            for k in RPS[c]
        ]
    return runs


def measure(mode: Mode, run: Run, watch: dict[str, int], seconds: int = 0) -> dict[str, Any]:
    """One run, with the CPU (% of one core) of every watched process and the other load."""
    before, cpu = cpu_counters(), {k: tree_cpu_s(p) for k, p in watch.items()}
    started = time.monotonic()
    if run.concurrency == 1:
        n, warmup = mode.latency_n, mode.latency_warmup
        result = latency_run(run, n=n, warmup=warmup, seconds=mode.latency_seconds)
    else:
        result = drivers.run_throughput(
            run.target,
            concurrency=run.concurrency,
            seconds=seconds or mode.rps_seconds,
            max_requests=mode.rps_max_requests,
            headers=run.headers,
        )
    wall = max(time.monotonic() - started, 1e-9)
    result["cpu_pct"] = {
        k: round((tree_cpu_s(p) - cpu[k]) / wall * 100, 1) for k, p in watch.items()
    }
    result["load"] = other_load(before, cpu_counters())
    return result


def served(admin_port: int) -> dict[str, int]:
    """An instance's ``aroutd_requests_total`` summed by status (its admin ``/metrics``)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    counts: Counter[str] = Counter()
    for status, n in REQUESTS_TOTAL.findall(text):
        counts[status] += int(n)
    return dict(counts)


def _source_note() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"aroutd from this checkout: {done.stdout.strip() or '?'} (the working tree)"


def run(mode: Mode, work: Path, notes: list[str]) -> dict[str, Any]:
    children = Children(log_dir=work / "logs")
    results: dict[str, Any] = {}
    notes.append(_source_note())
    try:
        layout = start_all(children, work, mode, new_api_key())
        results["upstream"] = layout.targets["direct"].kind
        if results["upstream"] != "nginx":
            notes.append("nginx absent: the fixed upstream is the trio one (may bottleneck)")
        results["startup_s"] = {k: round(v, 2) for k, v in layout.startup_s.items()}
        runs = conditions(layout.targets, mode.concurrencies)
        for r in runs:  # warm-up, unmeasured: pool connections, Redis scripts, code paths
            if r.concurrency > 1:
                measure(mode, r, layout.watch, seconds=1)
        started, before = time.monotonic(), cpu_counters()
        raw = interleaved(runs, mode.repeats, lambda r: measure(mode, r, layout.watch))
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine_load"] = other_load(before, cpu_counters())
        results["served"] = {k: served(port) for k, port in layout.admin.items()}
        results["redis"] = redis_facts(layout.redis)
    finally:
        children.close()
    results["tool"] = raw["c16:redis"][0]["tool"]
    results |= summarize(raw, mode.concurrencies)
    results["checks"] = checks(raw, results["served"])
    results["runs"] = raw
    return results


# --- summaries ----------------------------------------------------------------------------


def _cpu_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = runs[0]["cpu_pct"]
    out = {k: figure([r["cpu_pct"][k] for r in runs]) for k in keys}
    return out | {"other": figure([r["load"]["other_pct"] for r in runs], 1)}


def summarize(
    raw: dict[str, list[dict[str, Any]]], concurrencies: tuple[int, ...]
) -> dict[str, Any]:
    latency = summarize_latency(LATENCY, raw, PAIRS)
    rps = {c: {k: [r["rps"] for r in raw[f"c{c}:{k}"]] for k in RPS[c]} for c in concurrencies}
    throughput = {
        f"c{c}": {
            "rps": {k: figure(v) for k, v in rps[c].items()},
            "p99_us": {
                k: figure([r["latency_us"]["p99"] for r in raw[f"c{c}:{k}"]]) for k in RPS[c]
            },
            "cpu_pct": {k: _cpu_figures(raw[f"c{c}:{k}"]) for k in RPS[c]},
        }
        for c in concurrencies
    }
    throughput["c16"]["ratios"] = {
        f"{a}/{b}": ratio_figure(rps[16][a], rps[16][b]) for a, b in PAIRS
    }
    scaling = {f"c{c}": ratio_figure(rps[c]["two"], rps[c]["redis"]) for c in concurrencies}
    budgets = [
        budget(
            "added p50 at c=1, redis / sqlite",
            latency["ratios"]["redis/sqlite"]["p50"],
            "<=",
            ADDED_P50_BUDGET,
        ),
        budget(
            "req/s at c=16, redis / sqlite",
            throughput["c16"]["ratios"]["redis/sqlite"],
            ">=",
            RPS_BUDGET,
        ),
    ]
    return {
        "latency": latency,
        "throughput": throughput,
        "scaling": scaling,
        "scaling_aim": SCALE_AIM,
        "budget": budgets,
    }


def checks(
    raw: dict[str, list[dict[str, Any]]], by_instance: dict[str, dict[str, int]]
) -> dict[str, Any]:
    latency_ok = all(run_ok(r) for k in LATENCY for r in raw[k])
    failed = {
        name: sum(r["errors"] + r["non_2xx"] for r in runs)
        for name, runs in raw.items()
        if ":" in name
    }
    server_ok = all(set(counts) == {"200"} for counts in by_instance.values())
    both = all(by_instance[k].get("200", 0) > 0 for k in ("two-a", "two-b"))
    answers = {
        "c1": sum(sum(r["statuses"].values()) for k in LATENCY for r in raw[k]),
        "c1_non_200": sum(
            v for k in LATENCY for r in raw[k] for s, v in r["statuses"].items() if s != "200"
        ),
        "rps": sum(r["requests"] for name, runs in raw.items() if ":" in name for r in runs),
        "rps_failed": sum(failed.values()),
    }
    client_ok = latency_ok and answers["rps_failed"] == 0
    return {
        "answers": answers,
        "rps_failed_by_run": failed,
        "client_ok": client_ok,
        "server_ok": server_ok,
        "both_instances_served": both,
        "all_ok": client_ok and server_ok and both,
    }


def main(argv: list[str] | None = None) -> int:
    data = script_main(
        argv,
        slug="redis",
        doc=__doc__,
        modes=MODES,
        run=run,
        render=render,
        quick_help="fewer requests (~70 s)",
    )
    return 0 if data["results"]["checks"]["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
