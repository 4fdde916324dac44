"""The markdown report of ``bench.bench_redis`` (its data: see that module)."""

from __future__ import annotations

from typing import Any

from bench.compare import budget_lines, header_lines, latency_lines, notes_lines, yes

__all__ = ["LABELS", "render"]

LABELS = {
    "direct": "upstream direct",
    "relay": "bare relay (core 0)",
    "sqlite": "aroutd on sqlite (core 0)",
    "redis": "aroutd on Redis (core 0)",
    "two": "2 aroutd on Redis, one port (cores 0 + 1)",
}
SERVER_CPU = {"relay": "relay", "sqlite": "sqlite", "redis": "redis"}


def _layout_lines(r: dict[str, Any]) -> list[str]:
    redis, start = r["redis"], r["startup_s"]
    return [
        f"Layout: redis-server {redis['version']} started by the bench in its work dir "
        f"with appendonly {redis['appendonly']}, appendfsync {redis['appendfsync']} (no RDB "
        "snapshots), on core 1 with this process, the clients and the upstream; the bare "
        "relay and every aroutd (same key table, same bench API key) on core 0, except the "
        "second instance of the pair, on core 1. aroutd started (spawn to /healthz 200) in "
        + ", ".join(f"{k} {v:.2f} s" for k, v in start.items())
        + ".",
        "",
    ]


def _server_cpu(cpu: dict[str, Any], key: str) -> str:
    if key == "two":
        return f"{cpu['two-a']['text']} + {cpu['two-b']['text']}"
    return str(cpu[SERVER_CPU[key]]["text"])


def _rps_lines(r: dict[str, Any], m: dict[str, Any]) -> list[str]:
    tp, tool = r["throughput"]["c16"], r["tool"]
    lines = [
        f"### Keep-alive req/s at c=16 ({tool}, {m['rps_seconds']} s per run, at most "
        f"{m['rps_max_requests']:,} requests)",
        "",
        f"| target | req/s | p99 µs ({tool}) | server CPU % of a core |",
        "|---|---|---|---|",
    ]
    for k in ("relay", "sqlite", "redis"):
        cpu = _server_cpu(tp["cpu_pct"][k], k)
        lines.append(
            f"| {LABELS[k]} | {tp['rps'][k]['text']} | {tp['p99_us'][k]['text']} | {cpu} |"
        )
    lines += ["", "| ratio of req/s | value |", "|---|---|"]
    lines += [f"| {key} | {q['text']} |" for key, q in tp["ratios"].items()]
    return [*lines, ""]


def _part1_lines(r: dict[str, Any], m: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. One aroutd on sqlite next to one on Redis",
        "",
        f"### Latency at c=1 ({m['latency_n']} requests per run)",
        "",
        *latency_lines(r["latency"], ("direct", "relay", "sqlite", "redis"), LABELS),
        "",
        *_rps_lines(r, m),
        "### The issue's budget: the Redis store within 10% of sqlite",
        "",
        *budget_lines(r["budget"]),
        "",
    ]
    return lines


def _scaling_lines(r: dict[str, Any], m: dict[str, Any]) -> list[str]:
    cs = [int(c) for c in m["concurrencies"]]
    tp, scaling, aim = r["throughput"], r["scaling"], r["scaling_aim"]
    head = " | ".join(f"c={c} req/s" for c in cs)
    lines = [
        "## 2. Two aroutd on Redis sharing one port (`reuse_port = true`)",
        "",
        f"| target | {head} |",
        "|---" * (len(cs) + 1) + "|",
        f"| one: {LABELS['redis']} | "
        + " | ".join(tp[f"c{c}"]["rps"]["redis"]["text"] for c in cs)
        + " |",
        f"| {LABELS['two']} | " + " | ".join(tp[f"c{c}"]["rps"]["two"]["text"] for c in cs) + " |",
        "| **two / one** | " + " | ".join(f"**{scaling[f'c{c}']['text']}**" for c in cs) + " |",
        "",
        f"The issue aims at {aim}x; reached: "
        + ", ".join(f"c={c} {yes(scaling[f'c{c}']['median'] >= aim)}" for c in cs)
        + ".",
        "",
        "CPU during these runs (median, % of one core; other processes: % of all cores, "
        "outside this process tree):",
        "",
        "| run | aroutd core 0 | aroutd core 1 | redis-server | upstream | other processes |",
        "|---|---|---|---|---|---|",
    ]
    for c in cs:
        for k in ("redis", "two"):
            cpu = tp[f"c{c}"]["cpu_pct"][k]
            a, b = ("redis", None) if k == "redis" else ("two-a", "two-b")
            cells = [cpu[a]["text"], cpu[b]["text"] if b else "-"]
            cells += [cpu["redis-server"]["text"], cpu["upstream"]["text"], cpu["other"]["text"]]
            lines.append(
                f"| {'one' if k == 'redis' else 'two'}, c={c} | " + " | ".join(cells) + " |"
            )
    return [*lines, "", *_sharing_lines(r), ""]


def _sharing_lines(r: dict[str, Any]) -> list[str]:
    a, b = (r["served"][k].get("200", 0) for k in ("two-a", "two-b"))
    share = 100 * b / (a + b) if a + b else 0.0
    return [
        "With 2 cores there is no core left for the load: the instance on core 1 shares it "
        "with wrk, this process, nginx and redis-server (all pinned there), so two instances "
        "get less than two cores, and the other processes on the machine (column above) take "
        "from both. The kernel spreads the connections over the two listeners by their "
        f"addresses' hash: over the whole run the core-0 instance answered {a:,} requests, "
        f"the core-1 one {b:,} ({share:.0f}%).",
    ]


def _check_lines(r: dict[str, Any]) -> list[str]:
    c, load, redis = r["checks"], r["machine_load"], r["redis"]
    a = c["answers"]
    served = "; ".join(
        f"{k}: " + ", ".join(f"{n:,} × {s}" for s, n in sorted(v.items()))
        for k, v in r["served"].items()
    )
    return [
        "## 3. Request path",
        "",
        f"Every answer of the runs 200: {yes(c['client_ok'])} ({a['c1']:,} at c=1, "
        f"{a['c1_non_200']} not 200; {a['rps']:,} in the req/s runs, {a['rps_failed']} failed "
        f"or >= 400). Server side, `aroutd_requests_total` of each instance (warm-ups and "
        f"/healthz included) counts 200 only: {yes(c['server_ok'])} ({served}); both "
        f"instances on the shared port served: {yes(c['both_instances_served'])}. Redis after "
        f"the runs: {redis['keys']} keys in db 0, {redis['used_memory_human']}, AOF enabled: "
        f"{yes(bool(redis['aof_enabled']))}. Runs: {r['seconds']} s; other processes: "
        f"{load['other_pct']}% of the cores, stolen {load['steal_pct']}%.",
        "",
    ]


def render(data: dict[str, Any]) -> str:
    r, m = data["results"], data["settings"]
    lines = header_lines(data, "aroutd Redis state store benchmark")
    lines += _layout_lines(r)
    lines += _part1_lines(r, m)
    lines += _scaling_lines(r, m)
    lines += _check_lines(r)
    return "\n".join(lines + notes_lines(data))
