"""Scenarios (a)-(f) of the benchmark issue; each compares against the upstream served directly.

A scenario gets a ``Run`` (settings, children, work dir, key, notes) and returns a
plain dict: ``metrics[target][metric]`` and ``added[target][metric]`` hold the
median/spread of the per-repeat values (``stats.spread``), ``runs`` the raw
load-generator answers' essentials. Repeats interleave the targets so drift
hits them alike.
"""

from __future__ import annotations

import resource
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import drivers
from bench.aroutd_setup import new_api_key, wallet_jwt, write_big_keytable
from bench.procs import Children, http_get_status, rss_kib
from bench.settings import Settings
from bench.stats import spread, summary_us
from bench.targets import (
    Target,
    start_aroutd,
    start_fixed_upstream,
    start_relay,
    start_sse_upstream,
)

__all__ = [
    "Run",
    "Series",
    "auth_methods",
    "big_keytable",
    "idle_connections",
    "latency_c1",
    "sse_streams",
    "throughput",
]


@dataclass(kw_only=True)
class Run:
    """What every scenario shares (mutable: notes and children accumulate)."""

    settings: Settings
    children: Children
    work: Path
    api_key: str
    notes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Series:
    """values[target][metric] = one value per repeat."""

    values: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    details: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, target: str, metric: str, value: float) -> None:
        self.values[target][metric].append(float(value))

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {t: {m: spread(v) for m, v in ms.items() if v} for t, ms in self.values.items()}

    def added(self, metrics: tuple[str, ...], base: str = "direct") -> dict[str, dict[str, Any]]:
        """Per repeat, target minus base; then median and spread."""
        out: dict[str, dict[str, Any]] = {}
        for target, ms in self.values.items():
            if target == base:
                continue
            out[target] = {}
            for metric in metrics:
                pairs = list(
                    zip(ms.get(metric, []), self.values[base].get(metric, []), strict=False)
                )
                if pairs:
                    out[target][metric] = spread([a - b for a, b in pairs])
        return out


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """The load generator's answer without its bulky arrays."""
    return {k: v for k, v in result.items() if k not in ("quantiles_us", "timeline")}


def _all_ok(result: dict[str, Any]) -> bool:
    statuses = result.get("statuses", {})
    return not result.get("errors") and set(statuses) <= {"200"}


def latency_c1(run: Run, targets: list[Target]) -> dict[str, Any]:
    """(a) added latency p50/p90/p99 at concurrency 1 for a small chat request."""
    s, series, quantiles = run.settings, Series(), {}
    for _ in range(s.repeats):
        for target in targets:
            result = drivers.run_latency(
                target, n=s.latency_n, warmup=s.latency_warmup, seconds=s.latency_seconds
            )
            for metric in ("p50", "p90", "p99"):
                series.add(target.name, f"{metric}_us", result["latency_us"][metric])
            series.add(target.name, "rps", result["rps"])
            series.details[target.name].append(_brief(result))
            quantiles[target.name] = result["quantiles_us"]
    return {
        "title": "(a) latency at c=1, small chat request",
        "targets": [t.name for t in targets],
        "metrics": series.metrics(),
        "added": series.added(("p50_us", "p90_us", "p99_us")),
        "all_ok": all(_all_ok(r) for rs in series.details.values() for r in rs),
        "runs": dict(series.details),
        "quantiles_us": quantiles,
    }


def throughput(run: Run, targets: list[Target]) -> dict[str, Any]:
    """(b) requests per second with keep-alive at each concurrency (wrk when installed)."""
    s, series = run.settings, Series()
    for _ in range(s.repeats):
        for concurrency in s.rps_concurrency:
            for target in targets:
                result = drivers.run_throughput(
                    target,
                    concurrency=concurrency,
                    seconds=s.rps_seconds,
                    max_requests=s.rps_max_requests,
                )
                series.add(target.name, f"rps_c{concurrency}", result["rps"])
                series.add(target.name, f"p99_us_c{concurrency}", result["latency_us"]["p99"])
                series.details[target.name].append({"concurrency": concurrency, **result})
    tools = {r["tool"] for rs in series.details.values() for r in rs}
    return {
        "title": "(b) keep-alive requests per second",
        "targets": [t.name for t in targets],
        "tool": ",".join(sorted(tools)),
        "metrics": series.metrics(),
        "all_ok": all(
            r["errors"] == 0 and r["non_2xx"] == 0 for rs in series.details.values() for r in rs
        ),
        "runs": dict(series.details),
    }


def sse_streams(run: Run) -> dict[str, Any]:
    """(c) S concurrent SSE streams of E events: added delay per event and time to first byte."""
    s, series = run.settings, Series()
    seconds = 30.0 + s.sse_events * s.sse_interval_ms / 1000 * 3
    with run.children.scope() as children:
        upstream = start_sse_upstream(children, events=s.sse_events, interval_ms=s.sse_interval_ms)
        targets = [upstream]
        if s.with_relay:
            targets.append(start_relay(children, upstream, run.api_key))
        if s.with_aroutd:
            targets.append(
                start_aroutd(children, run.work / "aroutd-sse", upstream, run.api_key)[0]
            )
        for _ in range(s.repeats):
            for target in targets:
                result = drivers.run_sse(
                    target, streams=s.sse_streams, stagger_ms=s.sse_interval_ms, seconds=seconds
                )
                for metric in ("p50", "p99"):
                    series.add(target.name, f"event_{metric}_us", result["event_delay_us"][metric])
                    series.add(target.name, f"ttfb_{metric}_us", result["ttfb_us"][metric])
                    series.add(
                        target.name, f"first_event_{metric}_us", result["first_event_us"][metric]
                    )
                series.details[target.name].append(result)
    metrics = tuple(
        f"{kind}_{m}_us" for kind in ("event", "ttfb", "first_event") for m in ("p50", "p99")
    )
    expected = s.sse_streams * s.sse_events
    rate = s.sse_streams * 1000 / s.sse_interval_ms
    return {
        "title": f"(c) SSE: {s.sse_streams} streams x {s.sse_events} events, "
        f"one every {s.sse_interval_ms:g} ms ({rate:,.0f} events/s)",
        "targets": [t.name for t in targets],
        "streams": s.sse_streams,
        "metrics": series.metrics(),
        "added": series.added(metrics),
        "all_ok": all(
            _all_ok(r) and r["events"] == expected for rs in series.details.values() for r in rs
        ),
        "runs": dict(series.details),
    }


def _idle_count(wanted: int, target: Target) -> int:
    """The bare relay holds two descriptors per client (its upstream connection is not
    pooled): it is capped below RLIMIT_NOFILE, which only CAP_SYS_RESOURCE can raise."""
    if target.name != "relay":
        return wanted
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return wanted if soft == resource.RLIM_INFINITY else min(wanted, (soft - 1000) // 2)


def _idle_one(run: Run, children: Children, target: Target) -> dict[str, Any]:
    connections = _idle_count(run.settings.idle_connections, target)
    drivers.run_latency(target, n=200, warmup=0, seconds=10.0)  # warm the server's code paths
    time.sleep(0.3)
    before = rss_kib(target.pid, tree=True)
    holder, ready = drivers.start_idle(
        children, target, connections=connections, seconds=60.0 + connections / 200
    )
    try:
        time.sleep(1.0)  # let the server settle (trio tasks parked, buffers allocated)
        after = rss_kib(target.pid, tree=True)
    finally:
        final = drivers.finish_held(holder)
    opened = max(1, ready["open"])
    return {
        "connections": connections,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "open": ready["open"],
        "setup_s": ready["setup_s"],
        "statuses": final["statuses"],
        "errors": final["errors"],
        "kib_per_conn": round((after - before) / opened, 2),
    }


def idle_connections(run: Run) -> dict[str, Any]:
    """(d) N idle keep-alive connections: RSS delta per connection (fresh servers each repeat)."""
    s, series = run.settings, Series()
    for repeat in range(s.repeats):
        with run.children.scope() as children:
            upstream = start_fixed_upstream(children, run.work, name=f"idle-upstream-{repeat}")
            targets = [upstream]
            if s.with_relay:
                targets.append(start_relay(children, upstream, run.api_key))
            if s.with_aroutd:
                directory = run.work / f"aroutd-idle-{repeat}"
                targets.append(start_aroutd(children, directory, upstream, run.api_key)[0])
            for target in targets:
                result = _idle_one(run, children, target)
                series.add(target.name, "kib_per_conn", result["kib_per_conn"])
                series.add(target.name, "rss_before_kib", result["rss_before_kib"])
                series.details[target.name].append(result)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    capped = {
        f"{t} measured with {r['connections']} connections (2 descriptors each; "
        f"RLIMIT_NOFILE {nofile})"
        for t, rs in series.details.items()
        for r in rs
        if r["connections"] != s.idle_connections
    }
    return {
        "title": f"(d) {s.idle_connections} idle keep-alive connections: RSS per connection",
        "targets": list(series.values),
        "notes": sorted(capped),
        "connections": s.idle_connections,
        "metrics": series.metrics(),
        "all_ok": all(
            _all_ok(r) and r["open"] == r["connections"]
            for rs in series.details.values()
            for r in rs
        ),
        "runs": dict(series.details),
    }


def auth_methods(
    run: Run, direct: Target, aroutd: Target, jwt_secret: Path, public_url: str
) -> dict[str, Any]:
    """(e) Bearer, X-Api-Key, ?key= and a wallet JWT side by side (latency c=1, req/s c=16)."""
    s, series = run.settings, Series()
    token = wallet_jwt(jwt_secret, public_url)
    methods: dict[str, tuple[tuple[str, ...], str]] = {
        "bearer": ((f"Authorization: Bearer {run.api_key}",), aroutd.path),
        "x-api-key": ((f"X-Api-Key: {run.api_key}",), aroutd.path),
        "query-key": ((), f"{aroutd.path}?key={run.api_key}"),
        "wallet-jwt": ((f"Authorization: Bearer {token}",), aroutd.path),
    }
    statuses: dict[str, dict[str, int]] = {}
    for _ in range(s.repeats):
        result = drivers.run_latency(direct, n=s.auth_n, warmup=50, seconds=s.latency_seconds)
        series.add("direct", "p50_us", result["latency_us"]["p50"])
        series.add("direct", "p99_us", result["latency_us"]["p99"])
        for name, (headers, path) in methods.items():
            result = drivers.run_latency(
                aroutd, n=s.auth_n, warmup=50, seconds=s.latency_seconds, headers=headers, path=path
            )
            series.add(name, "p50_us", result["latency_us"]["p50"])
            series.add(name, "p99_us", result["latency_us"]["p99"])
            statuses[name] = result["statuses"]
            rps = drivers.run_throughput(
                aroutd,
                concurrency=16,
                seconds=s.rps_seconds,
                max_requests=s.rps_max_requests,
                headers=headers,
                path=path,
            )
            series.add(name, "rps_c16", rps["rps"])
            series.details[name].append({"latency": _brief(result), "throughput": rps})
    notes = [
        f"{name}: answered {st}, so its figures measure authentication without forwarding"
        for name, st in statuses.items()
        if set(st) != {"200"}
    ]
    return {
        "title": "(e) authentication methods side by side (aroutd)",
        "targets": ["direct", *methods],
        "metrics": series.metrics(),
        "added": series.added(("p50_us", "p99_us")),
        "statuses": statuses,
        "all_ok": not notes,
        "notes": notes,
        "runs": dict(series.details),
    }


def _reload_window(timeline: list[list[int]], start_ns: int, end_ns: int) -> dict[str, Any]:
    before = [lat for t0, lat in timeline if t0 + lat < start_ns]
    during = [lat for t0, lat in timeline if t0 + lat >= start_ns and t0 <= end_ns]
    return {"before_us": summary_us(before), "during_us": summary_us(during)}


def big_keytable(run: Run, upstream: Target) -> dict[str, Any]:
    """(f) N-key table: memory, startup time, SIGHUP reload time, latency during the reload."""
    s, series = run.settings, Series()
    # A million-key table takes minutes to build and load: one run then, repeats otherwise.
    for repeat in range(s.repeats if s.big_keys <= 100_000 else 1):
        with run.children.scope() as children:
            small, _, small_startup, _ = start_aroutd(
                children, run.work / f"aroutd-small-{repeat}", upstream, run.api_key
            )
            time.sleep(0.3)
            baseline = rss_kib(small.pid)
            series.add("1 key", "startup_s", small_startup)
            series.add("1 key", "rss_mib", baseline / 1024)
            directory = run.work / f"aroutd-big-{repeat}"
            directory.mkdir(parents=True, exist_ok=True)
            # The reload is detected by a key that the new table drops: it answers 200
            # until the swap and 401 after, so the probe fails authentication only once
            # (repeated 401s would trip the failed-auth limiter, SPEC §12).
            leaving = new_api_key()
            t0 = time.monotonic()
            size = write_big_keytable(
                directory / "keys.toml", run.api_key, s.big_keys, extra_keys=[leaving]
            )
            generate_s = time.monotonic() - t0
            big, files, startup_s, child = start_aroutd(
                children, directory, upstream, run.api_key, ready_timeout_s=s.big_ready_timeout_s
            )
            time.sleep(0.5)
            loaded = rss_kib(big.pid)
            ok = _key_status(big, run.api_key)
            leaving_ok = _key_status(big, leaving)
            write_big_keytable(files.keys, run.api_key, s.big_keys)
            probe = drivers.start_timeline(children, big, seconds=s.big_ready_timeout_s + 30)
            time.sleep(1.0)
            hup_ns = time.monotonic_ns()
            child.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + s.big_ready_timeout_s
            status = leaving_ok
            while status == 200 and time.monotonic() < deadline:
                time.sleep(0.005)
                status = _key_status(big, leaving)
            done_ns = time.monotonic_ns()
            reloaded = leaving_ok == 200 and status == 401
            time.sleep(0.5)
            timeline = drivers.finish_held(probe)
            window = _reload_window(timeline.get("timeline", []), hup_ns, done_ns)
            after = rss_kib(big.pid)
            peak = rss_kib(big.pid, field_name="VmHWM")
            tag = f"{s.big_keys} keys"
            series.add(tag, "startup_s", startup_s)
            series.add(tag, "rss_mib", loaded / 1024)
            series.add(tag, "table_mib", (loaded - baseline) / 1024)
            series.add(tag, "bytes_per_key", (loaded - baseline) * 1024 / s.big_keys)
            series.add(tag, "reload_s", (done_ns - hup_ns) / 1e9)
            series.add(tag, "rss_after_reload_mib", after / 1024)
            series.add(tag, "peak_rss_mib", peak / 1024)
            for phase in ("before", "during"):
                for metric in ("p50", "p99", "max"):
                    series.add(tag, f"{phase}_{metric}_us", window[f"{phase}_us"][metric])
            series.details[tag].append(
                {
                    "file_mib": round(size / 2**20, 1),
                    "generate_s": round(generate_s, 2),
                    "bench_key_status": ok,
                    "reloaded": reloaded,
                    "requests_during_reload": window["during_us"]["count"],
                    "probe_statuses": timeline.get("statuses"),
                    "reload_probe_status": status,
                    "probe_errors": timeline.get("errors"),
                }
            )
    details = [d for rs in series.details.values() for d in rs]
    return {
        "title": f"(f) {s.big_keys:,}-key table: memory, startup, SIGHUP reload",
        "targets": list(series.values),
        "keys": s.big_keys,
        "metrics": series.metrics(),
        "all_ok": all(
            d["bench_key_status"] == 200 and d["reloaded"] and not d["probe_errors"]
            for d in details
        ),
        "runs": dict(series.details),
    }


def _key_status(target: Target, key: str) -> int:
    """Status of GET /v1/models with ``key`` (forwarded to the upstream when the key is known)."""
    return http_get_status(target.port, "/v1/models", {"Authorization": f"Bearer {key}"})
