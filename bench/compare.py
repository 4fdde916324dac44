"""Shared pieces of the one-run comparison benchmarks (bench_management, bench_ratelimit).

Figures are the median (min–max) of R repeats (``figure``), ratios are computed per
repeat before the median (``ratio_figure``), the targets of a repeat run in an order
rotated per repeat (``interleaved``), and "added" latency is a target's minus the
upstream's served directly in the same repeat (``summarize_latency``). The rest is the
scaffolding of such a script: pinning this process, the JSON envelope, writing the
report, the markdown header and notes, the issue's budget checks (``budget``), and the
script's ``main`` (``script_main``: flags, pinning, work dir, report).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench import drivers, nginx, report
from bench.procs import (
    USABLE_CPUS,
    cpu_counters,
    disable_pinning,
    load_note,
    pin_available,
    work_dir,
)
from bench.settings import CLIENT_CPU, REPO_ROOT
from bench.stats import spread
from bench.targets import Target

__all__ = [
    "OUT_DIR",
    "Condition",
    "budget",
    "budget_lines",
    "envelope",
    "figure",
    "header_lines",
    "interleaved",
    "latency_lines",
    "latency_run",
    "notes_lines",
    "pin_this_process",
    "ratio_figure",
    "rotated",
    "run_ok",
    "script_main",
    "summarize_latency",
    "write_report",
    "yes",
]

T = TypeVar("T")
C = TypeVar("C", bound="Condition")
METRICS = ("p50", "p99")
OUT_DIR = REPO_ROOT / "bench" / "out"


# --- figures ------------------------------------------------------------------------------


def figure(values: Sequence[float], digits: int = 0) -> dict[str, Any]:
    """``stats.spread`` of the repeats plus ``text``: "median (min–max)" (one run: the value)."""
    s: dict[str, Any] = spread(values)

    def f(x: float) -> str:
        return f"{x:,.{digits}f}"

    s["text"] = (
        f(s["median"]) if len(values) == 1 else f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])})"
    )
    return s


def ratio_figure(nums: Sequence[float], dens: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """The figure of the per-repeat ratios num/den (NaN where den is 0)."""
    return figure([a / b if b else float("nan") for a, b in zip(nums, dens, strict=True)], digits)


def budget(what: str, fig: dict[str, Any], op: str, limit: float) -> dict[str, Any]:
    """A figure against a limit of the issue (``op``: "<=" or ">="); a NaN is not met."""
    value = float(fig["median"])
    met = value <= limit if op == "<=" else value >= limit
    return {
        "figure": what,
        "median": value,
        "text": fig["text"],
        "op": op,
        "limit": limit,
        "met": met,
    }


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def budget_lines(budgets: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown table of ``budget`` results."""
    lines = ["| figure | median (min–max) | limit | met |", "|---|---|---|---|"]
    for b in budgets:
        op = "≤" if b["op"] == "<=" else "≥"
        lines.append(f"| {b['figure']} | {b['text']} | {op} {b['limit']} | {yes(b['met'])} |")
    return lines


# --- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One thing measured per repeat: a target with the auth headers to send."""

    name: str
    label: str
    target: Target
    headers: tuple[str, ...]


def rotated(items: Sequence[T], repeat: int) -> list[T]:
    shift = repeat % len(items)
    return [*items[shift:], *items[:shift]]


def interleaved(
    conditions: Sequence[C], repeats: int, measure: Callable[[C], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """``measure`` every condition once per repeat, in an order rotated per repeat."""
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in conditions}
    for repeat in range(repeats):
        for cond in rotated(conditions, repeat):
            print(f"[bench] repeat {repeat + 1}: {cond.label}", file=sys.stderr, flush=True)
            runs[cond.name].append(measure(cond))
    return runs


def latency_run(cond: Condition, *, n: int, warmup: int, seconds: float) -> dict[str, Any]:
    """One c=1 ``drivers.run_latency`` run, without its quantiles and timeline."""
    result = drivers.run_latency(
        cond.target, n=n, warmup=warmup, seconds=seconds, headers=cond.headers
    )
    return {k: v for k, v in result.items() if k not in ("quantiles_us", "timeline")}


def run_ok(result: dict[str, Any]) -> bool:
    """A loadgen run without errors, with only 200 answers, that did not time out."""
    return not result["errors"] and set(result["statuses"]) == {"200"} and not result["timed_out"]


def summarize_latency(
    names: Sequence[str], runs: dict[str, list[dict[str, Any]]], pairs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """p50/p99 per target, added over ``direct`` per repeat, and num/den ratios of added."""
    per = {n: {m: [r["latency_us"][m] for r in runs[n]] for m in METRICS} for n in names}
    added = {
        n: {m: [a - b for a, b in zip(v[m], per["direct"][m], strict=True)] for m in METRICS}
        for n, v in per.items()
        if n != "direct"
    }
    out: dict[str, Any] = {"latency_us": {}, "added_us": {}, "ratios": {}}
    for name in names:
        out["latency_us"][name] = {m: figure(per[name][m]) for m in METRICS}
        if name != "direct":
            out["added_us"][name] = {m: figure(added[name][m]) for m in METRICS}
    for num, den in pairs:
        out["ratios"][f"{num}/{den}"] = {
            m: ratio_figure(added[num][m], added[den][m]) for m in METRICS
        }
    return out


# --- the script around it -----------------------------------------------------------------


def pin_this_process(no_pin: bool) -> list[str]:
    """Pin this process (and so the clients it starts) to the client core; the first notes."""
    if no_pin:
        disable_pinning()
    if pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[CLIENT_CPU % len(USABLE_CPUS)]})
        return []
    return ["processes are not pinned (--no-pin, or fewer than 2 usable cores)"]


def envelope(
    *,
    command: str,
    started: dt.datetime,
    mode: Any,
    results: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    """The report's JSON: date, command, duration, mode (a dataclass with a ``name``), machine."""
    binary = nginx.nginx_binary()
    machine = report.machine_info({"nginx": nginx.version(binary) if binary else None})
    machine["usable_cores"] = len(USABLE_CPUS)  # this process is pinned to one by now
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "mode": mode.name,
        "machine": machine,
        "settings": asdict(mode),
        "results": results,
        "notes": notes,
    }


def write_report(data: dict[str, Any], out: Path, text: str) -> None:
    """``report.json`` and ``report.md`` in ``out``; the markdown on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "report.md").write_text(text)
    print(text)
    print(f"[bench] report: {out / 'report.json'}", file=sys.stderr)


def header_lines(data: dict[str, Any], title: str) -> list[str]:
    r, m = data["results"], data["settings"]
    return [
        f"# {title} ({data['mode']})",
        "",
        f"`{data['command']}`, {data['date']}, {data['duration_s']:.0f} s. "
        f"{data['machine']['usable_cores']} cores ({data['machine']['cpu_model']}), "
        f"loopback, upstream: {r.get('upstream', '?')}. "
        f"{m['repeats']} repeats; figures: median (min–max) over the repeats.",
        "",
    ]


def latency_lines(lat: dict[str, Any], keys: Sequence[str], labels: Mapping[str, str]) -> list[str]:
    """The tables of a ``summarize_latency``: p50/p99 and added per target, then the ratios."""
    lines = [
        "| target | p50 µs | p99 µs | added p50 µs | added p99 µs |",
        "|---|---|---|---|---|",
    ]
    for k in keys:
        cells = [lat["latency_us"][k][q]["text"] for q in METRICS]
        add = lat["added_us"].get(k)
        cells += [add[q]["text"] for q in METRICS] if add else ["", ""]
        lines.append(f"| {labels[k]} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio of added latency | p50 | p99 |", "|---|---|---|"]
    for key, q in lat["ratios"].items():
        lines.append(f"| {key} | {q['p50']['text']} | {q['p99']['text']} |")
    return lines


def notes_lines(data: dict[str, Any]) -> list[str]:
    return ["Notes:", "", *(f"- {n}" for n in data["notes"]), ""] if data["notes"] else []


# --- main ---------------------------------------------------------------------------------


def parse_args(prog: str, doc: str, quick_help: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--repeats", type=int, help="override the mode's repeat count")
    parser.add_argument("--out", type=Path, help="report directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    return parser.parse_args(argv)


def script_main(
    argv: list[str] | None,
    *,
    slug: str,
    doc: str,
    modes: Mapping[str, Any],
    run: Callable[[Any, Path, list[str]], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    quick_help: str = "fewer requests",
) -> dict[str, Any]:
    """``python -m bench.bench_SLUG``: flags, the mode ("quick" / "full", dataclasses with
    ``name`` and ``repeats``), pinning, a temp work dir, ``run(mode, work, notes)``, then
    the report in ``--out`` or ``bench/out/SLUG-DATE/``. Returns the report's data."""
    prog = f"python -m bench.bench_{slug}"
    args = parse_args(prog, doc, quick_help, argv)
    mode = modes["quick" if args.quick else "full"]
    if args.repeats:
        mode = dataclasses.replace(mode, repeats=args.repeats)
    started, counters = dt.datetime.now(dt.UTC), cpu_counters()
    notes = pin_this_process(args.no_pin)
    with work_dir(f"aroutd-bench-{slug}-", args.keep, notes) as work:
        results = run(mode, work, notes)
    notes.append(load_note(counters))
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    data = envelope(command=command, started=started, mode=mode, results=results, notes=notes)
    write_report(data, args.out or OUT_DIR / f"{slug}-{started:%Y%m%d-%H%M%S}", render(data))
    return data
