"""The report: machine, per-scenario tables (median ± spread over repeats), ratios, targets.

``build_report`` turns scenario dicts into the JSON report; ``render_markdown``
makes the readable table; ``plot`` draws the latency/throughput PNG (matplotlib,
only when installed: it is a bench requirement, not a test dependency).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.targets import LABELS

__all__ = ["build_report", "check_targets", "machine_info", "plot", "render_markdown"]

RATIO_BASES = ("direct", "relay", "nginx-proxy", "asgi-proxy", "litellm")
KIB = 1024


def machine_info(tools: dict[str, str | None]) -> dict[str, Any]:
    model, mhz = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("cpu MHz") and not mhz:
                mhz = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_kib = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "cpu_mhz": mhz,
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        **tools,
    }


def _median(
    scenario: dict[str, Any] | None, section: str, target: str, metric: str
) -> float | None:
    if not scenario:
        return None
    value = scenario.get(section, {}).get(target, {}).get(metric)
    return None if value is None else float(value["median"])


def _check(
    name: str, value: float | None, limit: float | None, op: str, unit: str, note: str = ""
) -> dict[str, Any]:
    met = None
    if value is not None and limit is not None:
        met = value <= limit if op == "<=" else value < limit if op == "<" else value >= limit
    return {
        "target": name,
        "value": None if value is None else round(value, 3),
        "limit": None if limit is None else round(limit, 3),
        "op": op,
        "unit": unit,
        "met": met,
        "note": note if value is not None and limit is not None else note or "not measured",
    }


def check_targets(scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets; ``met`` is None when a figure was not measured in this run."""
    a, b, c, d = (scenarios.get(k) for k in ("a", "b", "c", "d"))
    relay_p50 = _median(a, "added", "relay", "p50_us")
    relay_rps = _median(b, "metrics", "relay", "rps_c16")
    litellm_rps = _median(b, "metrics", "litellm", "rps_c16")
    litellm_p50 = _median(a, "added", "litellm", "p50_us")
    asgi_rps = _median(b, "metrics", "asgi-proxy", "rps_c16")
    aroutd_rps = _median(b, "metrics", "aroutd", "rps_c16")
    aroutd_p50 = _median(a, "added", "aroutd", "p50_us")
    streams = (c or {}).get("streams")
    return [
        _check(
            "added p50 at c=1 within 1.3x the bare relay's",
            aroutd_p50,
            None if relay_p50 is None else 1.3 * relay_p50,
            "<=",
            "us",
        ),
        _check(
            "added p99 at c=1 under 2 ms",
            _median(a, "added", "aroutd", "p99_us"),
            2000.0,
            "<",
            "us",
        ),
        _check(
            "req/s at c=16 at least 60% of the bare relay's",
            aroutd_rps,
            None if relay_rps is None else 0.6 * relay_rps,
            ">=",
            "req/s",
        ),
        _check(
            "req/s at c=16 at least 30x the LiteLLM proxy's",
            aroutd_rps,
            None if litellm_rps is None else 30 * litellm_rps,
            ">=",
            "req/s",
        ),
        _check(
            "added p50 at c=1 under 1/20 of the LiteLLM proxy's",
            aroutd_p50,
            None if litellm_p50 is None else litellm_p50 / 20,
            "<",
            "us",
        ),
        _check(
            "req/s at c=16 at least 5x the hypercorn+httpx proxy's",
            aroutd_rps,
            None if asgi_rps is None else 5 * asgi_rps,
            ">=",
            "req/s",
        ),
        _check(
            "SSE added delay p99 under 5 ms with 500 streams",
            _median(c, "added", "aroutd", "event_p99_us"),
            5000.0,
            "<",
            "us",
            "" if streams in (None, 500) else f"measured with {streams} streams, not 500",
        ),
        _check(
            "under 30 KiB per idle connection",
            _median(d, "metrics", "aroutd", "kib_per_conn"),
            30.0,
            "<",
            "KiB",
            "" if not d else f"measured with {d.get('connections')} connections",
        ),
    ]


def build_report(
    *,
    mode: str,
    settings: dict[str, Any],
    machine: dict[str, Any],
    scenarios: dict[str, Any],
    notes: list[str],
    started: dt.datetime,
    command: str = "python -m bench",
) -> dict[str, Any]:
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "mode": mode,
        "machine": machine,
        "settings": settings,
        "scenarios": scenarios,
        "targets": check_targets(scenarios),
        "notes": notes,
    }


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat:
        return ""
    text = _fmt(stat["median"])
    if len(stat.get("runs", [])) > 1:
        text += f" ±{stat['spread_pct']:g}%"
    return text


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not b["median"]:
        return ""
    return f"{a['median'] / b['median']:.2f}x"


def _scenario_table(scenario: dict[str, Any]) -> list[str]:
    targets = scenario.get("targets", [])
    metrics, added = scenario.get("metrics", {}), scenario.get("added", {})
    bases = (
        [t for t in RATIO_BASES if t in targets and t != "aroutd"] if "aroutd" in targets else []
    )
    header = [
        "metric",
        *(LABELS.get(t, t) for t in targets),
        *(f"aroutd / {LABELS.get(t, t)}" for t in bases),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names: list[str] = []
    for values in metrics.values():
        names += [m for m in values if m not in names]
    rows = [("", m) for m in names] + [
        ("added ", m) for m in dict.fromkeys(m for v in added.values() for m in v)
    ]
    for prefix, metric in rows:
        section = added if prefix else metrics
        cells = [_cell(section.get(t, {}).get(metric)) for t in targets]
        if prefix:
            cells = ["" if t == "direct" else c for t, c in zip(targets, cells, strict=True)]
        ratios = [
            ""
            if prefix and base == "direct"
            else _ratio(section.get("aroutd", {}).get(metric), section.get(base, {}).get(metric))
            for base in bases
        ]
        lines.append("| " + " | ".join([prefix + metric, *cells, *ratios]) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [
        f"# aroutd benchmark ({report['mode']} mode)",
        "",
        f"Command: `{report.get('command', 'python -m bench')}`.",
        f"Date: {report['date']} UTC, {report['duration_s']} s. Machine: {m['cores']} cores "
        f"({m['cpu_model']}{', ' + m['cpu_mhz'] + ' MHz' if m.get('cpu_mhz') else ''}), "
        f"{m['memory_gib']} GiB, Python {m['python']}, Linux {m['kernel']}; "
        f"wrk {m.get('wrk') or 'absent'}, nginx {m.get('nginx') or 'absent'}.",
        f"Each figure: median over {report['settings']['repeats']} run(s), ± half the range "
        "as % of the median. Latency in microseconds (us); 'added' = target minus the "
        "upstream served directly, per run.",
        "",
        "## Targets",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        value = "" if t["value"] is None else f"{_fmt(t['value'])} {t['unit']}"
        limit = "" if t["limit"] is None else f"{t['op']} {_fmt(t['limit'])} {t['unit']}"
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        note = f" ({t['note']})" if t["note"] else ""
        out.append(f"| {t['target']}{note} | {value} | {limit} | {met} |")
    for key, scenario in report["scenarios"].items():
        out += ["", f"## {scenario.get('title', key)}", ""]
        if "error" in scenario:
            out.append(f"Not measured: {scenario['error']}")
            continue
        extra = [f"{k}: {scenario[k]}" for k in ("upstream", "tool") if scenario.get(k)]
        load = scenario.get("machine_load")
        if load:
            extra.append(
                f"{scenario.get('seconds')} s; other processes used {load['other_pct']}% of "
                f"the cores meanwhile, steal {load['steal_pct']}%"
            )
        if not scenario.get("all_ok", True):
            extra.append("**some requests failed or answered non-200: see the JSON report**")
        if extra:
            out += ["; ".join(extra), ""]
        out += _scenario_table(scenario)
        out += [f"- {note}" for note in scenario.get("notes", [])]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(out) + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    """Latency quantiles at c=1 and req/s by concurrency; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    a, b = report["scenarios"].get("a", {}), report["scenarios"].get("b", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for target, qs in a.get("quantiles_us", {}).items():
        xs = [100 * i / (len(qs) - 1) for i in range(len(qs))]
        left.plot(xs, qs, label=LABELS.get(target, target))
    left.set(xlabel="percentile", ylabel="latency (us)", yscale="log", title="(a) latency at c=1")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    for target, values in b.get("metrics", {}).items():
        points = sorted(
            (int(m.removeprefix("rps_c")), v["median"])
            for m, v in values.items()
            if m.startswith("rps_c")
        )
        if points:
            left_x, left_y = zip(*points, strict=True)
            right.plot(left_x, left_y, marker="o", label=LABELS.get(target, target))
    right.set(
        xlabel="concurrency",
        ylabel="req/s",
        xscale="log",
        yscale="log",
        title="(b) keep-alive req/s",
    )
    right.grid(True, which="both", alpha=0.3)
    right.legend()
    fig.suptitle(f"aroutd bench {report['date']} - {report['machine']['cpu_model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
