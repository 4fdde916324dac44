"""``python -m bench``: run the benchmark scenarios and write the report (see bench/README.md)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import drivers, nginx, report, scenarios
from bench.aroutd_setup import new_api_key
from bench.procs import (
    USABLE_CPUS,
    Children,
    cpu_counters,
    disable_pinning,
    load_note,
    other_load,
    pin_available,
    raise_nofile,
    work_dir,
)
from bench.settings import ALL_SCENARIOS, CLIENT_CPU, REPO_ROOT, Settings, for_mode
from bench.targets import (
    Target,
    start_aroutd,
    start_fixed_upstream,
    start_mock_upstream,
    start_relay,
)

__all__ = ["main"]

OUT_DIR = REPO_ROOT / "bench" / "out"
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
RESULTS_PLOT = REPO_ROOT / "bench" / "RESULTS.png"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="mode", action="store_const", const="quick", help="< 2 min (default)"
    )
    mode.add_argument(
        "--full", dest="mode", action="store_const", const="full", help="all sizes, 3 repeats, plot"
    )
    mode.add_argument(
        "--smoke", dest="mode", action="store_const", const="smoke", help="seconds: (a)+(b) only"
    )
    parser.add_argument(
        "--peers", action="store_true", help="also nginx map proxy, hypercorn+httpx, LiteLLM"
    )
    parser.add_argument("--only", help="comma-separated scenarios among a,b,c,d,e,f,m")
    parser.add_argument("--repeats", type=int, help="override the mode's repeat count")
    parser.add_argument(
        "--no-aroutd", action="store_true", help="harness only: direct and bare relay"
    )
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument("--out", type=Path, help="report directory (default bench/out/MODE-TIME)")
    parser.add_argument("--write-results", action="store_true", help="also write bench/RESULTS.md")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp work dir (configs, logs)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin to cores (a machine shared with others)"
    )
    args = parser.parse_args(argv)
    args.mode = args.mode or "quick"
    return args


def _settings(args: argparse.Namespace) -> Settings:
    s = for_mode(args.mode)
    changes: dict[str, Any] = {"peers": args.peers}
    if args.only:
        changes["scenarios"] = tuple(x.strip() for x in args.only.split(",") if x.strip())
    elif args.mode != "smoke":
        changes["scenarios"] = (*ALL_SCENARIOS, "m")
    if args.repeats:
        changes["repeats"] = args.repeats
    if args.no_aroutd:
        changes["with_aroutd"] = False
    if args.no_relay:
        changes["with_relay"] = False
    return s.replace(**changes)


def _guard(
    results: dict[str, Any], key: str, title: str, body: Callable[[], dict[str, Any]]
) -> None:
    """Run one scenario; a failure is recorded in the report instead of ending the run."""
    started, before = time.monotonic(), cpu_counters()
    print(f"[bench] {title} ...", file=sys.stderr, flush=True)
    try:
        results[key] = body()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        results[key] = {"title": title, "error": f"{type(exc).__name__}: {str(exc)[-600:]}"}
    results[key]["seconds"] = round(time.monotonic() - started, 1)
    results[key]["machine_load"] = other_load(before, cpu_counters())


def _mock_scenario(run: scenarios.Run) -> dict[str, Any]:
    """(m) latency at c=1 against the bundled hypercorn mock upstream (realistic bodies)."""
    with run.children.scope() as children:
        mock = start_mock_upstream(children)
        aroutd = start_aroutd(children, run.work / "aroutd-mock", mock, run.api_key)[0]
        result = scenarios.latency_c1(run, [mock, aroutd])
    result["title"] = "(m) latency at c=1 against the bundled mock upstream (hypercorn)"
    result["upstream"] = mock.kind
    return result


def run_all(s: Settings, work: Path, notes: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    children = Children(log_dir=work / "logs")
    run = scenarios.Run(
        settings=s, children=children, work=work, api_key=new_api_key(), notes=notes
    )
    try:
        upstream = start_fixed_upstream(children, work)
        if upstream.kind != "nginx":
            notes.append(
                "nginx absent: the fixed-response upstream is the trio one (may bottleneck)"
            )
        targets: list[Target] = [upstream]
        if s.with_relay:
            targets.append(start_relay(children, upstream, run.api_key))
        aroutd, files = None, None
        if s.with_aroutd:
            try:
                aroutd, files, startup_s, _ = start_aroutd(
                    children,
                    work / "aroutd",
                    upstream,
                    run.api_key,
                    ready_timeout_s=s.ready_timeout_s,
                )
                targets.append(aroutd)
                notes.append(f"aroutd started in {startup_s:.2f} s (1-key table)")
            except Exception as exc:
                notes.append(f"aroutd did not start: {type(exc).__name__}: {str(exc)[-600:]}")
        if s.peers:
            from bench.peers import start_peers

            targets += start_peers(children, work, upstream, run.api_key, notes)
        wanted = set(s.scenarios)
        if "a" in wanted:
            _guard(results, "a", "(a) latency at c=1", lambda: scenarios.latency_c1(run, targets))
            results["a"]["upstream"] = upstream.kind
        if "b" in wanted:
            _guard(results, "b", "(b) keep-alive req/s", lambda: scenarios.throughput(run, targets))
            results["b"]["upstream"] = upstream.kind
        if "c" in wanted:
            _guard(results, "c", "(c) SSE streams", lambda: scenarios.sse_streams(run))
        if "d" in wanted:
            _guard(results, "d", "(d) idle connections", lambda: scenarios.idle_connections(run))
        if "e" in wanted and aroutd is not None and files is not None:
            a, f = aroutd, files
            _guard(
                results,
                "e",
                "(e) auth methods",
                lambda: scenarios.auth_methods(run, upstream, a, f.jwt_secret, f.public_url),
            )
        if "f" in wanted and s.with_aroutd:
            _guard(results, "f", "(f) big key table", lambda: scenarios.big_keytable(run, upstream))
        if "m" in wanted and s.with_aroutd:
            _guard(results, "m", "(m) mock upstream", lambda: _mock_scenario(run))
    finally:
        children.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    s = _settings(args)
    started, counters = dt.datetime.now(dt.UTC), cpu_counters()
    if args.no_pin:
        disable_pinning()
    if pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[CLIENT_CPU % len(USABLE_CPUS)]})
    nofile = raise_nofile(max(65536, 2 * s.idle_connections + 4096))
    notes: list[str] = []
    if not pin_available():
        notes.append("processes are not pinned (--no-pin, or fewer than 2 usable cores)")
    nginx_binary = nginx.nginx_binary()
    tools = {
        "wrk": drivers.wrk_version(),
        "nginx": nginx.version(nginx_binary) if nginx_binary else None,
        "nofile_limit": str(nofile),
    }
    if tools["wrk"] is None:
        notes.append(
            "wrk absent: throughput measured with the trio client (it may be the bottleneck)"
        )
    with work_dir("aroutd-bench-", args.keep, notes) as work:
        results = run_all(s, work, notes)
    notes.append(load_note(counters))
    data = report.build_report(
        mode=s.mode,
        settings=dataclasses.asdict(s),
        machine=report.machine_info(tools),
        scenarios=results,
        notes=notes,
        started=started,
        command=" ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
    )
    out = args.out or OUT_DIR / f"{s.mode}-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    text = report.render_markdown(data)
    (out / "report.md").write_text(text)
    plotted = s.plot and report.plot(data, out / "latency.png")
    if args.write_results:
        if plotted:
            shutil.copyfile(out / "latency.png", RESULTS_PLOT)
        RESULTS.write_text(text + ("\n![latency and throughput](RESULTS.png)\n" if plotted else ""))
    if plotted:
        text += f"\nPlot: {out / 'latency.png'}\n"
    print(text)
    print(f"[bench] report: {out / 'report.json'}", file=sys.stderr)
    failed = [k for k, v in results.items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
