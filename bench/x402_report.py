"""bench_x402's summaries and markdown report (the figures: bench.compare's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.compare import figure, header_lines, notes_lines, ratio_figure, yes

__all__ = ["LABELS", "render", "summarize"]

METRICS = ("p50", "p99")
PAID = ("paid", "challenge")
LABELS = {
    "plain": "plain API-key request",
    "paid": "paid request alone (`PAYMENT-SIGNATURE`, presigned)",
    "challenge": "402 challenge fetch + paid retry",
    "facilitator": "fake facilitator on its own: `/verify` + `/settle` from the client",
}


def summarize(raw: dict[str, Any], expected: Mapping[str, str], replayed: str) -> dict[str, Any]:
    """p50/p99 per kind, paid / plain per repeat, added over plain, and the checks."""
    runs: dict[str, list[dict[str, Any]]] = raw["runs"]
    per = {k: {m: [r["latency_us"][m] for r in v] for m in METRICS} for k, v in runs.items()}
    trips: dict[str, Any] = {
        "latency_us": {k: {m: figure(v[m]) for m in METRICS} for k, v in per.items()},
        "ratios": {
            f"{k}/plain": {m: ratio_figure(per[k][m], per["plain"][m]) for m in METRICS}
            for k in PAID
        },
        "added_p50_us": {
            k: figure([a - b for a, b in zip(per[k]["p50"], per["plain"]["p50"], strict=True)])
            for k in PAID
        },
    }
    answers = {
        k: {"expected": expected[k], "statuses": _sum_statuses(v), "timed_out": _timed_out(v)}
        for k, v in runs.items()
    }
    answers_ok = all(
        set(a["statuses"]) == {a["expected"]} and not a["timed_out"] for a in answers.values()
    )
    replay_ok = raw["replay"] == f"402 {replayed}"
    return {
        "seconds": raw["seconds"],
        "machine_load": raw["machine_load"],
        "round_trips": trips,
        "checks": {
            "answers": answers,
            "answers_ok": answers_ok,
            "replay": raw["replay"],
            "replay_ok": replay_ok,
            "all_ok": answers_ok and replay_ok,
        },
        "runs": runs,
    }


def _sum_statuses(runs: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        for status, count in r["statuses"].items():
            out[status] = out.get(status, 0) + count
    return out


def _timed_out(runs: list[dict[str, Any]]) -> int:
    return sum(1 for r in runs if r["timed_out"])


# --- markdown -----------------------------------------------------------------------------


def _local_lines(local: dict[str, Any], m: dict[str, Any]) -> list[str]:
    lines = [
        f"## 1. Local verification, in process, one core ({m['local_seconds']} s per case "
        "and repeat)",
        "",
        "| call | calls/s (CPU time) | µs per call | calls/s (wall clock) |",
        "|---|---|---|---|",
    ]
    for case in local["cases"].values():
        cells = [case[k]["text"] for k in ("cpu_per_s", "us_per_call", "wall_per_s")]
        lines.append(f"| {case['label']} | " + " | ".join(cells) + " |")
    return [*lines, "", f"Every case verified: {yes(local['all_ok'])}.", ""]


def _trip_lines(trips: dict[str, Any], m: dict[str, Any]) -> list[str]:
    lat, ratios = trips["latency_us"], trips["ratios"]
    lines = [
        f"## 2. Pay and serve, round trips at c=1 ({m['n']} per run after {m['warmup']} "
        "warm-up, one keep-alive connection)",
        "",
        "| request | p50 µs | p99 µs | p50 / plain | p99 / plain | added p50 µs |",
        "|---|---|---|---|---|---|",
    ]
    for k, label in LABELS.items():
        cells = [lat[k][q]["text"] for q in METRICS]
        if k in PAID:
            cells += [ratios[f"{k}/plain"][q]["text"] for q in METRICS]
            cells.append(trips["added_p50_us"][k]["text"])
        else:
            cells += ["", "", ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [
        *lines,
        "",
        "A paid request: decoded and checked locally, claimed in the state store (sqlite), "
        "`/verify` and `/settle` at the facilitator, the settlement recorded and credited, "
        "then served with `PAYMENT-RESPONSE` and its wallet JWT. The client's signing is "
        "not timed (done before each run).",
        "",
    ]


def _check_lines(r: dict[str, Any]) -> list[str]:
    c, load = r["checks"], r["machine_load"]
    counts = ", ".join(
        f"{k} {sum(a['statuses'].values()):,} × `{a['expected']}`" for k, a in c["answers"].items()
    )
    return [
        f"Checks: every answer as expected ({counts}): {yes(c['answers_ok'])}; a replayed "
        f"payment: `{c['replay']}`: {yes(c['replay_ok'])}. Round trips: {r['seconds']} s; "
        f"other processes: {load['other_pct']}% of the cores, stolen {load['steal_pct']}%.",
        "",
    ]


def render(data: dict[str, Any]) -> str:
    r, m = data["results"], data["settings"]
    lines = header_lines(data, "aroutd x402 benchmark")
    lines += _local_lines(r["local"], m)
    lines += _trip_lines(r["round_trips"], m)
    lines += _check_lines(r)
    return "\n".join(lines + notes_lines(data))
