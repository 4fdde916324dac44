"""Rate-limit benchmark (SPEC §9): what a key's rpm/rpd limiter costs on the request path.

    python -m bench.bench_ratelimit [--quick] [--keep] [--out DIR] [--no-pin]

One process tree on loopback, laid out as ``python -m bench`` (the server under test
pinned to core 0; this process, the clients and the upstream to core 1): the fixed
upstream (nginx when installed, else ``bench.upstream``), the bare relay and one aroutd
whose key table holds two API keys of tenant ``bench``: ``plain`` (no limits) and
``limited`` (``rpm_limit = 1000000000``, ``rpd_limit = 1000000000000``: never refused,
but every request of it runs the limiter and its answer carries ``X-RateLimit-*``).
Measured, R repeats, the runs of a repeat interleaved in an order rotated per repeat
(median, min–max):

1. c=1 latency of the small chat request of scenario (a) (``bench.loadgen``): upstream
   direct, bare relay, aroutd with ``plain``, aroutd with ``limited``; added p50/p99 over
   direct, per repeat;
2. keep-alive req/s at c=16 (``drivers.run_throughput``: wrk, else the trio client;
   bounded in requests and seconds): bare relay, ``plain``, ``limited``;
3. the server's instructions per request of ``plain`` and ``limited`` (``bench.callgrind``:
   a second aroutd on the same key table under valgrind, one keep-alive connection,
   rounds rotated, the idle rate taken off), a figure the machine's pace does not move
   (full mode only; skipped with a note when valgrind is missing);
4. ratios limited/plain, against the issue's budget (within 5%: added p50 ratio <= 1.05,
   req/s ratio >= 0.95, server CPU and instructions per request <= 1.05), and
   limited/relay, plain/relay.

Checks: one request with each key before and after the runs (``http.client``, which sees
the headers): ``limited`` gets 200 with ``X-RateLimit-Limit``, ``plain`` 200 without
``X-RateLimit-*``; every answer of the runs is 200 (loadgen: its statuses; wrk: no error,
no status >= 400, so no 429). Exit status 1 when a check fails (a budget not met is a
result, not a failure). Output: the markdown report on stdout, and
``bench/out/ratelimit-DATE/report.json``. Full: about 7 minutes (4 of them under
valgrind); ``--quick``: ~40 s.
"""

from __future__ import annotations

import http.client
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import callgrind, drivers
from bench.aroutd_setup import new_api_key, sha256_hex
from bench.compare import (
    Condition,
    budget,
    budget_lines,
    figure,
    header_lines,
    interleaved,
    latency_lines,
    latency_run,
    notes_lines,
    ratio_figure,
    run_ok,
    script_main,
    summarize_latency,
    yes,
)
from bench.procs import Children, cpu_counters, other_load, process_cpu_ns
from bench.targets import Target, start_aroutd, start_fixed_upstream, start_relay
from bench.upstream import REQUEST_BODY

__all__ = ["main"]

RPM_LIMIT = 1_000_000_000
RPD_LIMIT = 1_000_000_000_000
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
LATENCY = ("direct", "relay", "plain", "limited")
RPS = ("relay", "plain", "limited")
CPU = ("plain", "limited")  # the req/s runs whose server CPU per request is recorded
PAIRS = (("limited", "plain"), ("limited", "relay"), ("plain", "relay"))
LABELS = {
    "direct": "upstream direct",
    "relay": "bare relay",
    "plain": "aroutd, key without limits",
    "limited": "aroutd, key with rpm/rpd limits",
}
ADDED_P50_BUDGET = 1.05  # the issue: rate limiting within 5%
RPS_BUDGET = 0.95
REQUEST_TIMEOUT_S = 10.0
CALLGRIND_READY_S = 300.0  # Python's start under valgrind: about 30 s here
CALLGRIND_WARMUP = 50  # requests per key before counting


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    name: str
    repeats: int
    latency_n: int  # c=1 requests per latency run
    latency_warmup: int
    latency_seconds: float  # bound of one latency run
    rps_concurrency: int
    rps_seconds: int  # length of one req/s run
    rps_max_requests: int  # cap of one req/s run
    instructions_n: int  # requests per key per callgrind round
    instructions_rounds: int  # 0: no callgrind figure


MODES = {
    "full": Mode(
        name="full",
        # many short repeats rather than a few long ones: the machine's pace drifts over
        # seconds, and a ratio is taken within each repeat
        repeats=15,
        latency_n=1000,
        latency_warmup=100,
        latency_seconds=10.0,
        rps_concurrency=16,
        rps_seconds=2,
        rps_max_requests=100_000,
        instructions_n=200,
        instructions_rounds=4,
    ),
    "quick": Mode(
        name="quick",
        repeats=3,
        latency_n=800,
        latency_warmup=100,
        latency_seconds=8.0,
        rps_concurrency=16,
        rps_seconds=2,
        rps_max_requests=100_000,
        instructions_n=0,
        instructions_rounds=0,
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Condition):
    key: str  # "direct", "relay", "plain" or "limited"
    rps: bool = False  # a req/s run at c=16; else a c=1 latency run


def write_keys(directory: Path, plain: str, limited: str) -> None:
    """Tenant ``bench`` with the keys ``plain`` (no limits) and ``limited``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys.toml").write_text(
        "[tenants.bench]\n\n"
        f'[[keys]]\nid = "plain"\ntenant = "bench"\nsha256 = "{sha256_hex(plain)}"\n\n'
        f'[[keys]]\nid = "limited"\ntenant = "bench"\nsha256 = "{sha256_hex(limited)}"\n'
        f"rpm_limit = {RPM_LIMIT}\nrpd_limit = {RPD_LIMIT}\n"
    )


def probe(target: Target, headers: tuple[str, ...]) -> dict[str, Any]:
    """One chat request on a fresh connection: its status and X-RateLimit-* headers."""
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=REQUEST_TIMEOUT_S)
    sent = dict(h.split(": ", 1) for h in headers) | {"Content-Type": "application/json"}
    try:
        conn.request("POST", target.path, body=REQUEST_BODY, headers=sent)
        response = conn.getresponse()
        response.read()
        return {
            "status": response.status,
            "headers": {h: response.getheader(h) for h in RATE_HEADERS},
        }
    finally:
        conn.close()


def conditions(upstream: Target, relay: Target, aroutd: Target, limited_key: str) -> list[Run]:
    targets = {"direct": upstream, "relay": relay, "plain": aroutd, "limited": aroutd}
    headers = {
        "direct": (),
        "relay": relay.headers,
        "plain": aroutd.headers,
        "limited": (f"Authorization: Bearer {limited_key}",),
    }
    runs = [
        Run(name=k, key=k, label=LABELS[k], target=targets[k], headers=headers[k]) for k in LATENCY
    ]
    return runs + [
        Run(
            name=f"rps:{k}",
            key=k,
            label=f"{LABELS[k]}, req/s at c=16",
            target=targets[k],
            headers=headers[k],
            rps=True,
        )
        for k in RPS
    ]


def measure(
    mode: Mode, run: Run, *, seconds: int | None = None, pid: int | None = None
) -> dict[str, Any]:
    """One run; a req/s run of aroutd (``pid``) also records the server's CPU time per
    request (schedstat, all its threads): a figure client-side noise does not reach."""
    if not run.rps:
        return latency_run(
            run, n=mode.latency_n, warmup=mode.latency_warmup, seconds=mode.latency_seconds
        )
    before = process_cpu_ns(pid)[0] if pid is not None else 0
    result = drivers.run_throughput(
        run.target,
        concurrency=mode.rps_concurrency,
        seconds=seconds or mode.rps_seconds,
        max_requests=mode.rps_max_requests,
        headers=run.headers,
    )
    if pid is not None and result["requests"]:
        spent_ns = process_cpu_ns(pid)[0] - before
        result["server_cpu_us_per_request"] = spent_ns / 1000 / result["requests"]
    return result


def run(mode: Mode, work: Path, notes: list[str]) -> dict[str, Any]:
    children = Children(log_dir=work / "logs")
    plain_key, limited_key = new_api_key(), new_api_key()
    results: dict[str, Any] = {}
    try:
        upstream = start_fixed_upstream(children, work)
        results["upstream"] = upstream.kind
        if upstream.kind != "nginx":
            notes.append("nginx absent: the fixed upstream is the trio one (may bottleneck)")
        relay = start_relay(children, upstream, plain_key)
        write_keys(work / "aroutd", plain_key, limited_key)
        aroutd, _files, startup_s, child = start_aroutd(
            children, work / "aroutd", upstream, plain_key
        )
        notes.append(f"aroutd started in {startup_s:.2f} s")
        runs = conditions(upstream, relay, aroutd, limited_key)
        keys = {r.key: r.headers for r in runs if r.key in ("plain", "limited") and not r.rps}
        probes = {k: [probe(aroutd, h)] for k, h in keys.items()}
        for r in runs:  # warm-up, unmeasured: pool connections, limiter state, code paths
            if r.rps:
                measure(mode, r, seconds=1)
        started, before = time.monotonic(), cpu_counters()

        def one(r: Run) -> dict[str, Any]:
            return measure(mode, r, pid=child.pid if r.key in ("plain", "limited") else None)

        raw = interleaved(runs, mode.repeats, one)
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine_load"] = other_load(before, cpu_counters())
        for k, h in keys.items():
            probes[k].append(probe(aroutd, h))
        if mode.instructions_rounds and callgrind.available():
            results["instructions"] = count_instructions(
                mode, children, work, upstream, (plain_key, limited_key), keys
            )
        elif mode.instructions_rounds:
            notes.append("valgrind absent: no instruction counts")
    finally:
        children.close()
    results["tool"] = raw["rps:plain"][0]["tool"]
    results |= summarize(raw, results.get("instructions"))
    results["checks"] = checks(probes, raw, results.get("instructions"))
    results["runs"] = raw
    return results


def count_instructions(
    mode: Mode,
    children: Children,
    work: Path,
    upstream: Target,
    api_keys: tuple[str, str],
    headers: dict[str, tuple[str, ...]],
) -> dict[str, Any]:
    """A second aroutd on the same key table, under callgrind: its instructions per request
    of each key (``bench.callgrind``)."""
    write_keys(work / "aroutd-callgrind", *api_keys)
    out = work / "callgrind.out"
    target, _files, startup_s, child = start_aroutd(
        children,
        work / "aroutd-callgrind",
        upstream,
        api_keys[0],
        ready_timeout_s=CALLGRIND_READY_S,
        prefix=callgrind.prefix(out),
    )
    started = time.monotonic()
    counted = callgrind.measure(
        child.pid,
        out,
        target.port,
        {k: headers[k] for k in CPU},
        n=mode.instructions_n,
        rounds=mode.instructions_rounds,
        warmup=CALLGRIND_WARMUP,
        path=target.path,
        body=REQUEST_BODY,
    )
    return counted | {
        "startup_s": round(startup_s, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


# --- summaries ----------------------------------------------------------------------------


def summarize(
    raw: dict[str, list[dict[str, Any]]], counted: dict[str, Any] | None = None
) -> dict[str, Any]:
    latency = summarize_latency(LATENCY, raw, PAIRS)
    p50s = {
        k: [r["latency_us"]["p50"] for r in raw[k]] for k in ("plain", "limited")
    }  # direct cancels
    latency["limited_minus_plain_p50_us"] = figure(
        [a - b for a, b in zip(p50s["limited"], p50s["plain"], strict=True)], 1
    )
    rps = {k: [r["rps"] for r in raw[f"rps:{k}"]] for k in RPS}
    throughput = {
        "rps": {k: figure(v) for k, v in rps.items()},
        "p99_us": {k: figure([r["latency_us"]["p99"] for r in raw[f"rps:{k}"]]) for k in RPS},
        "ratios": {f"{a}/{b}": ratio_figure(rps[a], rps[b]) for a, b in PAIRS},
    }
    cpu = {k: [r["server_cpu_us_per_request"] for r in raw[f"rps:{k}"]] for k in CPU}
    throughput["server_cpu_us"] = {k: figure(v, 1) for k, v in cpu.items()}
    throughput["server_cpu_ratio"] = ratio_figure(cpu["limited"], cpu["plain"])
    p50 = latency["ratios"]["limited/plain"]["p50"]
    rate = throughput["ratios"]["limited/plain"]
    budgets = [
        budget("added p50 at c=1, limited / plain", p50, "<=", ADDED_P50_BUDGET),
        budget("req/s at c=16, limited / plain", rate, ">=", RPS_BUDGET),
        budget(
            "server CPU per request at c=16, limited / plain",
            throughput["server_cpu_ratio"],
            "<=",
            ADDED_P50_BUDGET,
        ),
    ]
    summary: dict[str, Any] = {"latency": latency, "throughput": throughput, "budget": budgets}
    if counted is not None:
        per = counted["per_request"]
        summary["instructions_summary"] = {
            "per_request": {k: figure(per[k]) for k in CPU},
            "raw_per_request": {k: figure(counted["raw_per_request"][k]) for k in CPU},
            "ratio": ratio_figure(per["limited"], per["plain"], 3),
            "added": figure([a - b for a, b in zip(per["limited"], per["plain"], strict=True)]),
        }
        budgets.append(
            budget(
                "server instructions per request (callgrind), limited / plain",
                summary["instructions_summary"]["ratio"],
                "<=",
                ADDED_P50_BUDGET,
            )
        )
    return summary


def checks(
    probes: dict[str, list[dict[str, Any]]],
    raw: dict[str, list[dict[str, Any]]],
    counted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    limited_ok = all(
        p["status"] == 200 and p["headers"]["x-ratelimit-limit"] for p in probes["limited"]
    )
    plain_ok = all(p["status"] == 200 and not any(p["headers"].values()) for p in probes["plain"])
    answers = {
        k: {
            "c1": sum(sum(r["statuses"].values()) for r in raw[k]),
            "c1_non_200": sum(v for r in raw[k] for s, v in r["statuses"].items() if s != "200"),
            "c16": sum(r["requests"] for r in raw[f"rps:{k}"]),
            "c16_failed": sum(r["errors"] + r["non_2xx"] for r in raw[f"rps:{k}"]),
        }
        for k in ("plain", "limited")
    }
    runs_ok = all(run_ok(r) for k in LATENCY for r in raw[k]) and all(
        r["errors"] == 0 and r["non_2xx"] == 0 for k in RPS for r in raw[f"rps:{k}"]
    )
    counted_ok = counted is None or all(
        set(by_status) == {200} for by_status in counted["statuses"].values()
    )
    return {
        "probes": probes,
        "limited_headers_ok": limited_ok,
        "plain_headers_ok": plain_ok,
        "answers": answers,
        "runs_ok": runs_ok,
        "counted_ok": counted_ok,
        "all_ok": limited_ok and plain_ok and runs_ok and counted_ok,
    }


# --- the report ---------------------------------------------------------------------------


def _latency_lines(lat: dict[str, Any], m: dict[str, Any]) -> list[str]:
    lines = [f"## 1. Latency at c=1 ({m['latency_n']} requests per run)", ""]
    lines += latency_lines(lat, LATENCY, LABELS)
    diff = lat["limited_minus_plain_p50_us"]["text"]
    return [*lines, "", f"Added p50, limited minus plain: {diff} µs.", ""]


def _throughput_lines(tp: dict[str, Any], m: dict[str, Any], tool: str) -> list[str]:
    lines = [
        f"## 2. Keep-alive req/s at c={m['rps_concurrency']} ({tool}, {m['rps_seconds']} s "
        f"per run, at most {m['rps_max_requests']:,} requests)",
        "",
        f"| target | req/s | p99 µs ({tool}) |",
        "|---|---|---|",
    ]
    for k in RPS:
        lines.append(f"| {LABELS[k]} | {tp['rps'][k]['text']} | {tp['p99_us'][k]['text']} |")
    lines += ["", "| ratio of req/s | value |", "|---|---|"]
    lines += [f"| {key} | {q['text']} |" for key, q in tp["ratios"].items()]
    cpu = tp["server_cpu_us"]
    lines += [
        "",
        "Server CPU per request in these runs (all of aroutd's threads, schedstat): "
        f"plain {cpu['plain']['text']} µs, limited {cpu['limited']['text']} µs; "
        f"limited/plain {tp['server_cpu_ratio']['text']}.",
    ]
    return [*lines, ""]


def _instruction_lines(r: dict[str, Any]) -> list[str]:
    if "instructions" not in r:
        return []
    counted, summary = r["instructions"], r["instructions_summary"]
    lines = [
        f"## 3. Server instructions per request (callgrind, {counted['rounds']} rounds of "
        f"{counted['n']} requests per key, one keep-alive connection)",
        "",
        "| key | instructions per request | before the idle rate was taken off |",
        "|---|---|---|",
    ]
    for k in CPU:
        lines.append(
            f"| {LABELS[k]} | {summary['per_request'][k]['text']} | "
            f"{summary['raw_per_request'][k]['text']} |"
        )
    idle = ", ".join(f"{x:,}" for x in counted["idle_instructions_per_s"])
    return [
        *lines,
        "",
        f"limited/plain {summary['ratio']['text']}; added {summary['added']['text']} "
        f"instructions per request. Idle rate before and after the rounds: {idle} per "
        f"second under valgrind; started in {counted['startup_s']} s, counted in "
        f"{counted['seconds']} s.",
        "",
    ]


def _check_lines(r: dict[str, Any]) -> list[str]:
    c, load = r["checks"], r["machine_load"]
    lines = [
        f"## {4 if 'instructions' in r else 3}. The issue's budget: rate limiting within 5%",
        "",
        *budget_lines(r["budget"]),
    ]
    before, after = (p["headers"] for p in c["probes"]["limited"])
    a = c["answers"]
    return [
        *lines,
        "",
        f"Checks: `limited` answered 200 with `X-RateLimit-Limit: {before['x-ratelimit-limit']}`"
        f" (Remaining {before['x-ratelimit-remaining']} before the runs, "
        f"{after['x-ratelimit-remaining']} after): {yes(c['limited_headers_ok'])}; `plain` "
        f"answered 200 without X-RateLimit-*: {yes(c['plain_headers_ok'])}. Every answer "
        f"of the runs 200, no 429: {yes(c['runs_ok'])} (limited: {a['limited']['c1']:,} at "
        f"c=1, {a['limited']['c1_non_200']} not 200; {a['limited']['c16']:,} at c=16, "
        f"{a['limited']['c16_failed']} failed or >= 400). Runs: {r['seconds']} s; other "
        f"processes: {load['other_pct']}% of the cores, stolen {load['steal_pct']}%.",
        "",
    ]


def render(data: dict[str, Any]) -> str:
    r, m = data["results"], data["settings"]
    lines = header_lines(data, "aroutd rate-limit benchmark")
    lines += _latency_lines(r["latency"], m)
    lines += _throughput_lines(r["throughput"], m, r["tool"])
    lines += _instruction_lines(r)
    lines += _check_lines(r)
    return "\n".join(lines + notes_lines(data))


# --- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    data = script_main(
        argv,
        slug="ratelimit",
        doc=__doc__,
        modes=MODES,
        run=run,
        render=render,
        quick_help="fewer requests (~40 s)",
    )
    return 0 if data["results"]["checks"]["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
