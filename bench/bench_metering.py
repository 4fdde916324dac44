"""Usage metering's cost on the request path: aroutd with metering (on) and without (off).

    python -m bench.bench_metering [--quick] [--keep] [--out DIR] [--no-pin]

"on" is this checkout's aroutd (usage metering, ``include_usage`` injection and the
usage-chunk filter, pricing, the usage book). "off" is the same daemon one commit
before metering (``OFF_COMMIT``), extracted with ``git archive`` into the temp work dir
and started with its tree as ``cwd`` and ``PYTHONPATH`` (the venv's other packages are
shared); the report shows where each one imported ``aroutd`` from. Both get the same
config, with a ``[pricing."openai/gpt-4o-mini"]`` table, and run side by side with the
bare relay, each pinned to core 0; the clients and the upstreams share core 1. Measured,
R repeats, the targets interleaved in an order rotated per repeat (median, min-max):

1. c=1 latency of a non-streamed chat completion (``bench.loadgen`` latency, the
   request of scenario (a)) against the nginx fixed upstream, whose JSON answer holds
   an OpenAI ``usage`` object: added p50/p99 over direct for the relay, off and on, and
   the ratios on/off, on/relay, off/relay.
2. SSE throughput: S concurrent streams of E events with no pause between them, each a
   ``chat.completion.chunk`` (``bench.upstream``'s bytes, one HTTP chunk per event), then
   a usage-only chunk and ``[DONE]``, requested with ``"stream": true`` and *without*
   ``stream_options``, so "on" adds ``include_usage`` upstream and removes the usage
   chunk on the way back. The upstream here is a pre-framed one in this module
   (``--fast-upstream``): ``bench.upstream`` spends more per event on core 1 than the
   proxy on core 0, so with it the client core, not the proxy, set the rate. Content
   events received per second (a lean client in this module, ``--sse-client``), and the
   server's CPU time per event (``/proc/PID/task/*/schedstat``).
3. SSE paced: ``bench.upstream`` itself, many streams, one event every M ms each (a fixed
   offered rate below saturation, so each event arrives on its own, as from a real
   model): the server's CPU per event, and the per-event delay (receive time minus the
   upstream's stamp).
4. Where the time goes: one more run of each workload against a separate "on" daemon
   whose metering calls are wrapped in ``perf_counter_ns`` (``--timed-serve``): µs per
   call and per request or event. And the pieces alone in a tight loop in this process.

Afterwards the access logs are read: every request "on" served must have a non-null
``usage`` (and a cost, from the pricing table); "off" none. Output: the markdown report
on stdout and ``bench/out/metering-DATE/report.json``. Full: ~3 minutes, ``--quick`` ~1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench import drivers, nginx, report
from bench.aroutd_setup import new_api_key, write_keytable
from bench.compare import figure, ratio_figure
from bench.procs import (
    USABLE_CPUS,
    Child,
    Children,
    cpu_counters,
    disable_pinning,
    free_port,
    load_note,
    other_load,
    pin_available,
    process_cpu_ns,
    wait_http,
    wait_port,
    work_dir,
)
from bench.settings import CLIENT_CPU, REPO_ROOT, SERVER_CPU, UPSTREAM_CPU
from bench.stats import summary_us
from bench.targets import Target, python_env, start_fixed_upstream, start_relay
from bench.upstream import _CHUNK_HEAD, _USAGE_EVENT

__all__ = ["main"]

OFF_COMMIT = "149911e"  # the parent of the usage work: the same daemon without metering
OUT_DIR = REPO_ROOT / "bench" / "out"
PRICING = '[pricing."openai/gpt-4o-mini"]\ninput = 0.15\noutput = 0.60\ncached_input = 0.075\n'
# The SSE request: a stream, and no stream_options (so "on" injects include_usage).
SSE_BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hi"}]}'
CHAT_PATH = "/v1/chat/completions"
SSE_PATH = "/sse/v1/chat/completions"  # aroutd: strip_prefix "/sse" to the fast SSE upstream
PACED_PATH = "/paced/v1/chat/completions"
MARGIN_S = 15.0
NAMES = ("direct", "relay", "off", "on")
LABELS = {
    "direct": "upstream direct",
    "relay": "bare relay",
    "off": f"aroutd off ({OFF_COMMIT})",
    "on": "aroutd on (metering)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    name: str
    repeats: int
    latency_n: int  # c=1 requests per latency run
    latency_warmup: int
    latency_seconds: float
    sat_streams: int  # SSE throughput: concurrent streams ...
    sat_events: int  # ... of this many events, no pause between them
    paced_streams: int  # SSE paced: concurrent streams ...
    paced_events: int  # ... of this many events ...
    paced_interval_ms: float  # ... one every this many ms per stream
    sse_seconds: float  # bound of one SSE run


MODES = {
    "full": Mode(
        name="full",
        repeats=5,
        latency_n=2000,
        latency_warmup=200,
        latency_seconds=15.0,
        sat_streams=16,
        sat_events=2500,
        paced_streams=50,
        paced_events=100,
        paced_interval_ms=20.0,
        sse_seconds=30.0,
    ),
    "quick": Mode(
        name="quick",
        repeats=3,
        latency_n=800,
        latency_warmup=100,
        latency_seconds=8.0,
        sat_streams=16,
        sat_events=1000,
        paced_streams=50,
        paced_events=50,
        paced_interval_ms=20.0,
        sse_seconds=20.0,
    ),
}


# --- the pre-framed SSE upstream (``--fast-upstream``, for the throughput runs) ------------


def fast_response(events: int) -> bytes:
    """The whole answer of ``bench.upstream``'s stream, framed as h11 frames it (one HTTP
    chunk per event, then the usage chunk with ``[DONE]``), built once. Its ``t_ns`` stamps
    are all the same: the throughput runs count events, they time no event."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    event = _CHUNK_HEAD + str(time.monotonic_ns()).encode() + b"}\n\n"
    framed = b"%x\r\n" % len(event) + event + b"\r\n"
    usage = b"%x\r\n" % len(_USAGE_EVENT) + _USAGE_EVENT + b"\r\n"
    return head + framed * events + usage + b"0\r\n\r\n"


async def _fast_upstream(port: int, events: int) -> None:
    """Answer every request on 127.0.0.1:port with ``fast_response`` (keep-alive), sent
    with as few writes as the socket takes: the upstream costs next to nothing per event,
    so the proxy, not the shared client core, is what a throughput run measures."""
    response = fast_response(events)

    async def handle(stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                need = int(match.group(1)) if match else 0
                while len(buf) < need:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[need:]
                await stream.send_all(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            await stream.aclose()

    await trio.serve_tcp(handle, port, host="127.0.0.1", backlog=4096)


# --- the SSE client (``--sse-client``, a subprocess on the client core) --------------------


class _Dechunker:
    """A minimal HTTP/1.1 chunked-body decoder: raw bytes in, body bytes out; ``done`` once
    the last chunk came (trailers are not read: the connection is closed after)."""

    def __init__(self) -> None:
        self.buf = b""
        self.left = 0  # data bytes left in the current chunk
        self.skip = 0  # bytes of the CRLF after a chunk's data still to skip
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        i, n = 0, len(buf)
        while i < n and not self.done:
            if self.left:
                take = min(self.left, n - i)
                out.append(buf[i : i + take])
                i += take
                self.left -= take
                if not self.left:
                    self.skip = 2
            elif self.skip:
                take = min(self.skip, n - i)
                i += take
                self.skip -= take
            else:
                eol = buf.find(b"\r\n", i)
                if eol < 0:
                    break
                self.left = int(buf[i:eol].split(b";", 1)[0], 16)
                self.done = self.left == 0
                i = eol + 2
        self.buf = buf[i:]
        return b"".join(out)


_T_NS = re.compile(rb'"t_ns":(\d+)')
_USAGE = b'"usage"'
_DONE = b"data: [DONE]"


async def _sse_client(args: argparse.Namespace) -> dict[str, Any]:
    """S streams: connect all, then send the request (each after a random offset within
    ``stagger_ms``), read the answer to its end, count its events, close."""
    body = SSE_BODY
    head = (
        f"POST {args.path} HTTP/1.1\r\nhost: 127.0.0.1:{args.port}\r\n"
        + "".join(f"{h}\r\n" for h in args.header)
        + f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    counts: list[int] = []
    usage_chunks, done_lines, delays = [0], [0], []
    first_send, last_end = [2**63], [0]
    connected = [0]
    go = trio.Event()

    async def one() -> None:
        stream = None
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", args.port)
            connected[0] += 1
            if connected[0] >= args.streams:
                go.set()
            await go.wait()
            if args.stagger_ms:
                await trio.sleep(random.uniform(0, args.stagger_ms / 1000))
            t0 = time.monotonic_ns()
            first_send[0] = min(first_send[0], t0)
            await stream.send_all(request)
            raw = b""
            while b"\r\n\r\n" not in raw:
                data = await stream.receive_some(65536)
                if not data:
                    raise EOFError("closed before the response head")
                raw += data
            head_bytes, _, rest = raw.partition(b"\r\n\r\n")
            statuses[int(head_bytes.split(b" ", 2)[1])] += 1
            if b"transfer-encoding: chunked" not in head_bytes.lower():
                raise ValueError("the answer is not chunked")
            dechunk, events, pending = _Dechunker(), 0, b""
            data = rest
            while True:
                now = time.monotonic_ns()
                pending += dechunk.feed(data)
                complete, _, pending = pending.rpartition(b"\n\n")
                if complete:
                    if args.delays:
                        for match in _T_NS.finditer(complete):
                            delays.append(now - int(match.group(1)))
                            events += 1
                    else:
                        events += complete.count(b'"t_ns":')
                    usage_chunks[0] += complete.count(_USAGE)
                    done_lines[0] += complete.count(_DONE)
                if dechunk.done:
                    break
                data = await stream.receive_some(65536)
                if not data:
                    raise EOFError("closed before the end of the body")
            last_end[0] = max(last_end[0], time.monotonic_ns())
            counts.append(events)
        except (OSError, EOFError, ValueError, trio.BrokenResourceError) as exc:
            errors[type(exc).__name__] += 1
            connected[0] += 1
            if connected[0] >= args.streams:
                go.set()
        finally:
            if stream is not None:
                await stream.aclose()

    with trio.move_on_after(args.seconds) as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(args.streams):
                nursery.start_soon(one)
    elapsed_ns = max(last_end[0] - first_send[0], 1)
    events = sum(counts)
    return {
        "streams": args.streams,
        "streams_complete": len(counts),
        "events": events,
        "events_per_stream_min": min(counts, default=0),
        "usage_chunks": usage_chunks[0],
        "done_lines": done_lines[0],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "timed_out": scope.cancelled_caught,
        "elapsed_s": round(elapsed_ns / 1e9, 4),
        "events_per_s": round(events / elapsed_ns * 1e9, 1),
        "delay_us": summary_us(delays) if args.delays else None,
    }


def _pin_client() -> None:
    if pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[CLIENT_CPU % len(USABLE_CPUS)]})


def run_sse(
    target: Target,
    path: str,
    *,
    streams: int,
    stagger_ms: float,
    seconds: float,
    delays: bool,
    measure_pid: int | None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.bench_metering", "--sse-client", str(target.port)]
    argv += ["--path", path, "--streams", str(streams), "--stagger-ms", str(stagger_ms)]
    argv += ["--seconds", str(seconds)] + (["--delays"] if delays else [])
    for header in target.headers:
        argv += ["--header", header]
    before = process_cpu_ns(measure_pid) if measure_pid else (0, 0)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + MARGIN_S,
            env=python_env(),
            cwd=REPO_ROOT,
            preexec_fn=_pin_client,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the SSE client did not finish in {seconds + MARGIN_S:.0f} s") from None
    after = process_cpu_ns(measure_pid) if measure_pid else (0, 0)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"SSE client exited {done.returncode}: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if measure_pid:
        cpu_s = (after[0] - before[0]) / 1e9
        result["server_cpu_s"] = round(cpu_s, 4)
        result["server_cpu_ticks_s"] = round((after[1] - before[1]) / 1e9, 3)
        # the client's window (first request to last byte) is within the CPU window
        result["server_cpu_pct"] = round(100 * cpu_s / max(result["elapsed_s"], 1e-9), 1)
        result["server_cpu_us_per_event"] = round(cpu_s * 1e6 / max(result["events"], 1), 2)
    return result


# --- the two aroutd trees and their daemons ------------------------------------------------


def extract_off_tree(dest: Path) -> Path:
    """``git archive OFF_COMMIT aroutd`` into ``dest``: a tree with only the package."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", OFF_COMMIT, "aroutd"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    return dest


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that imports ``aroutd`` from ``tree`` (PYTHONPATH = the tree only)."""
    env = python_env()
    env["PYTHONPATH"] = str(tree)
    return env


def imported_from(tree: Path) -> str:
    """Where ``python -m aroutd`` with ``tree_env(tree)`` and ``cwd=tree`` imports aroutd."""
    done = subprocess.run(
        [sys.executable, "-c", "import aroutd; print(aroutd.__file__)"],
        capture_output=True,
        text=True,
        env=tree_env(tree),
        cwd=tree,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def _write_config(
    directory: Path, port: int, upstreams: dict[str, int], api_key: str, secret: bytes
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "jwt.secret").write_bytes(secret)
    (directory / "jwt.secret").chmod(0o600)
    write_keytable(directory / "keys.toml", api_key)
    parts = [
        "[server]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        'admin_listen = ""\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
        "max_connections = 12000\n"
        "idle_timeout_s = 300\n"
        '\n[keys]\nfile = "keys.toml"\n'
        '\n[state]\npath = "state/aroutd.db"\n'
        '\n[wallet]\njwt_secret_file = "jwt.secret"\n'
    ]
    for name, up_port in upstreams.items():
        parts.append(
            f"\n[upstreams.{name}]\n"
            f'url = "http://127.0.0.1:{up_port}"\n'
            'auth_header = "Authorization"\n'
            'auth_value = "Bearer upstream-secret"\n'
            "pool_size = 256\n"
        )
    parts.append('\n[[routes]]\nprefix = "/v1/"\nupstream = "fixed"\nprovider = "openai"\n')
    for name in ("sse", "paced"):
        parts.append(
            f'\n[[routes]]\nprefix = "/{name}/v1/"\nupstream = "{name}"\n'
            f'provider = "openai"\nstrip_prefix = "/{name}"\n'
        )
    parts.append("\n" + PRICING)
    config = directory / "aroutd.toml"
    config.write_text("".join(parts))
    return config


def start_daemon(
    children: Children,
    name: str,
    tree: Path,
    directory: Path,
    upstreams: dict[str, int],
    api_key: str,
    secret: bytes,
) -> tuple[Target, Child, float]:
    port = free_port()
    config = _write_config(directory, port, upstreams, api_key, secret)
    argv = [sys.executable, "-m", "aroutd", "serve", "--config", str(config)]
    child = children.spawn(f"aroutd-{name}", argv, cpu=SERVER_CPU, env=tree_env(tree), cwd=tree)
    startup_s = wait_http(child, port, "/healthz", 30.0)
    target = Target(
        name=name,
        port=port,
        pid=child.pid,
        headers=(f"Authorization: Bearer {api_key}",),
        kind="trio+h11",
    )
    return target, child, startup_s


def start_sse_upstream(children: Children, name: str, events: int, interval_ms: float) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    argv += ["--sse-events", str(events), "--sse-interval-ms", str(interval_ms)]
    child = children.spawn(name, argv, cpu=UPSTREAM_CPU, env=python_env(), cwd=REPO_ROOT)
    wait_port(child, port, 10.0)
    return Target(name="direct", port=port, pid=child.pid, kind="trio-sse")


def start_fast_upstream(children: Children, events: int) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bench_metering", "--fast-upstream", str(port)]
    argv += ["--events", str(events)]
    child = children.spawn("fast-upstream", argv, cpu=UPSTREAM_CPU, env=python_env(), cwd=REPO_ROOT)
    wait_port(child, port, 10.0)
    return Target(name="direct", port=port, pid=child.pid, kind="pre-framed")


def read_access_log(log: Path) -> dict[str, Any]:
    """Access lines of a daemon's stderr log: how many, with usage, with a cost > 0."""
    lines = usage = cost = 0
    paths: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    example = None
    for raw in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict) or "event" in rec or "request_id" not in rec:
            continue
        if rec.get("path") == "/healthz":
            continue
        lines += 1
        statuses[str(rec.get("status"))] += 1
        if rec.get("usage") is not None:
            usage += 1
            paths[str(rec.get("path"))] += 1
            if example is None or (
                str(rec.get("path")).startswith("/sse")
                and "/sse" not in (example.get("path") or "")
            ):
                example = {k: rec.get(k) for k in ("path", "model", "usage", "cost")}
        if isinstance(rec.get("cost"), int | float) and rec["cost"] > 0:
            cost += 1
    return {
        "lines": lines,
        "with_usage": usage,
        "with_cost": cost,
        "usage_by_path": dict(paths),
        "statuses": dict(statuses),
        "example": example,
    }


# The calls a timed "on" daemon wraps: (module, owner attribute or None, name, label).
TIMED_CALLS = (
    ("aroutd.shell.forward", None, "ask_for_usage", "ask_for_usage (request body)"),
    ("aroutd.shell.handler", None, "check_spend", "check_spend"),
    ("aroutd.shell.metering", "Metering", "start", "Metering.start (answer head)"),
    ("aroutd.shell.metering", "Metering", "feed_batch", "Metering.feed_batch (each receive)"),
    ("aroutd.shell.metering", "Metering", "flush", "Metering.flush"),
    ("aroutd.shell.forward", None, "account", "account (after the answer)"),
    ("aroutd.usage.book", "UsageBook", "add", "UsageBook.add (within account)"),
)


def timed_serve(out: str, argv: list[str]) -> int:
    """``aroutd serve`` (this checkout) with each call of ``TIMED_CALLS`` wrapped in
    ``perf_counter_ns``; at exit (SIGTERM drains, then returns) ``{label: [ns, calls]}``
    is written to ``out``. For the in-daemon breakdown only, never for the on/off runs."""
    import atexit
    import importlib

    totals: dict[str, list[int]] = {}
    for module_name, owner_name, name, label in TIMED_CALLS:
        module = importlib.import_module(module_name)
        owner = module if owner_name is None else getattr(module, owner_name)
        original = getattr(owner, name)
        totals[label] = slot = [0, 0]

        def timed(*a: Any, _f: Any = original, _s: list[int] = slot, **k: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return _f(*a, **k)
            finally:
                _s[0] += time.perf_counter_ns() - t0
                _s[1] += 1

        setattr(owner, name, timed)
    atexit.register(lambda: Path(out).write_text(json.dumps(totals)))
    from aroutd.cli import main as aroutd_main

    return aroutd_main(argv)


def timed_breakdown(
    mode: Mode,
    children: Children,
    work: Path,
    upstreams: dict[str, int],
    api_key: str,
    secret: bytes,
) -> dict[str, Any]:
    """One run of each workload against a fresh timed "on" daemon: µs per call of each
    metering piece, and per request (non-streamed) or per event (SSE) in all."""
    out: dict[str, Any] = {}
    for phase in ("chat", "sse", "paced"):
        print(f"[bench] timed on daemon: {phase}", file=sys.stderr, flush=True)
        port = free_port()
        directory = work / f"aroutd-timed-{phase}"
        config = _write_config(directory, port, upstreams, api_key, secret)
        dump = directory / "timed.json"
        argv = [sys.executable, "-m", "bench.bench_metering", "--timed-serve", str(dump)]
        argv += ["serve", "--config", str(config)]
        with children.scope() as scope:
            child = scope.spawn(
                f"aroutd-timed-{phase}",
                argv,
                cpu=SERVER_CPU,
                env=tree_env(REPO_ROOT),
                cwd=REPO_ROOT,
            )
            wait_http(child, port, "/healthz", 30.0)
            target = Target(
                name="on", port=port, pid=child.pid, headers=(f"Authorization: Bearer {api_key}",)
            )
            if phase == "chat":
                r = drivers.run_latency(
                    target,
                    n=mode.latency_n,
                    warmup=mode.latency_warmup,
                    seconds=mode.latency_seconds,
                    headers=target.headers,
                )
                units, unit = r["count"] + mode.latency_warmup, "request"
                extra = {"p50_us": r["latency_us"]["p50"]}
            else:
                paced = phase == "paced"
                r = run_sse(
                    target,
                    PACED_PATH if paced else SSE_PATH,
                    streams=mode.paced_streams if paced else mode.sat_streams,
                    stagger_ms=mode.paced_interval_ms if paced else 0,
                    seconds=mode.sse_seconds,
                    delays=False,
                    measure_pid=child.pid,
                )
                units, unit = r["events"], "event"
                extra = {"server_cpu_us_per_event": r["server_cpu_us_per_event"]}
        # the scope stopped the daemon (SIGTERM): it has written its totals
        totals = json.loads(dump.read_text()) if dump.exists() else {}
        out[phase] = {
            "unit": unit,
            "units": units,
            **extra,
            "calls": {
                label: {
                    "calls": calls,
                    "us_per_call": round(ns / max(calls, 1) / 1000, 2),
                    "calls_per_unit": round(calls / max(units, 1), 3),
                    "us_per_unit": round(ns / max(units, 1) / 1000, 2),
                }
                for label, (ns, calls) in totals.items()
            },
        }
    return out


def micro_costs(n: int = 20_000) -> dict[str, float]:
    """µs per call of the metering pieces of this checkout, in this process (best of 3
    batches of ``n``): what each one adds to a request or an event, without the relay."""
    from aroutd.shell.metering import Metering
    from aroutd.usage.include_usage import ask_for_usage
    from bench.upstream import FIXED_BODY, REQUEST_BODY

    event = _CHUNK_HEAD + str(time.monotonic_ns()).encode() + b"}\n\n"
    sse_head = [(b"content-type", b"text/event-stream")]
    json_head = [(b"content-type", b"application/json")]

    def streamed(strip: bool) -> Any:
        metering = Metering("openai", strip=strip)
        metering.start(sse_head)
        return lambda: metering.feed_batch([event])

    def json_answer() -> None:
        metering = Metering("openai")
        metering.start(json_head)
        metering.feed_batch([FIXED_BODY])
        metering.usage()

    cases = {
        "SSE event: usage meter only": streamed(False),
        "SSE event: usage meter + usage-chunk filter (on's stream path)": streamed(True),
        "request: ask_for_usage, non-streamed body (None)": lambda: ask_for_usage(REQUEST_BODY),
        "request: ask_for_usage, stream body (rewritten)": lambda: ask_for_usage(SSE_BODY),
        "response: meter a JSON answer (start, feed, usage)": json_answer,
    }
    out = {}
    for name, fn in cases.items():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
        out[name] = round(best, 2)
    return out


# --- the runs -----------------------------------------------------------------------------


def run(mode: Mode, work: Path, notes: list[str], checks: dict[str, Any]) -> dict[str, Any]:
    children = Children(log_dir=work / "logs")
    api_key, secret = new_api_key(), os.urandom(32).hex().encode()
    results: dict[str, Any] = {}
    logs: dict[str, Path] = {}
    try:
        fixed = start_fixed_upstream(children, work)
        results["upstream"] = fixed.kind
        if fixed.kind != "nginx":
            notes.append("nginx absent: the fixed upstream is bench.upstream (trio)")
        sat_up = start_fast_upstream(children, mode.sat_events)
        paced_up = start_sse_upstream(
            children, "paced-upstream", mode.paced_events, mode.paced_interval_ms
        )
        relays = {
            "chat": start_relay(children, fixed, api_key),
            "sse": start_relay(children, sat_up, api_key),
            "paced": start_relay(children, paced_up, api_key),
        }
        upstreams = {"fixed": fixed.port, "sse": sat_up.port, "paced": paced_up.port}
        off_tree = checks["off_tree"]
        daemons: dict[str, Target] = {}
        for name, tree in (("off", off_tree), ("on", REPO_ROOT)):
            target, child, startup_s = start_daemon(
                children, name, tree, work / f"aroutd-{name}", upstreams, api_key, secret
            )
            daemons[name], logs[name] = target, child.log
            notes.append(f"aroutd {name} started in {startup_s:.2f} s (pid {child.pid})")
            checks[f"{name}_cwd"] = os.readlink(f"/proc/{child.pid}/cwd")

        targets = {
            "chat": {"direct": fixed, "relay": relays["chat"], **daemons},
            "sse": {"direct": sat_up, "relay": relays["sse"], **daemons},
            "paced": {"direct": paced_up, "relay": relays["paced"], **daemons},
        }
        paths = {
            "chat": {n: CHAT_PATH for n in NAMES},
            "sse": {"direct": CHAT_PATH, "relay": CHAT_PATH, "off": SSE_PATH, "on": SSE_PATH},
            "paced": {
                "direct": CHAT_PATH,
                "relay": CHAT_PATH,
                "off": PACED_PATH,
                "on": PACED_PATH,
            },
        }
        # warm-up: every target once, unmeasured (pool connections, code paths)
        for name in NAMES:
            t = targets["chat"][name]
            drivers.run_latency(t, n=200, warmup=0, seconds=10.0, headers=t.headers)
            run_sse(
                targets["sse"][name],
                paths["sse"][name],
                streams=4,
                stagger_ms=0,
                seconds=mode.sse_seconds,
                delays=False,
                measure_pid=None,
            )
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {
            k: {n: [] for n in NAMES} for k in ("chat", "sse", "paced")
        }
        started, before = time.monotonic(), cpu_counters()
        for repeat in range(mode.repeats):
            order = list(NAMES[repeat % 4 :] + NAMES[: repeat % 4])
            for name in order:
                print(f"[bench] repeat {repeat + 1}: latency, {LABELS[name]}", file=sys.stderr)
                t = targets["chat"][name]
                r = drivers.run_latency(
                    t,
                    n=mode.latency_n,
                    warmup=mode.latency_warmup,
                    seconds=mode.latency_seconds,
                    headers=t.headers,
                    path=paths["chat"][name],
                )
                raw["chat"][name].append(
                    {k: v for k, v in r.items() if k not in ("quantiles_us", "timeline")}
                )
            for name in order:
                print(f"[bench] repeat {repeat + 1}: SSE, {LABELS[name]}", file=sys.stderr)
                t = targets["sse"][name]
                raw["sse"][name].append(
                    run_sse(
                        t,
                        paths["sse"][name],
                        streams=mode.sat_streams,
                        stagger_ms=0,
                        seconds=mode.sse_seconds,
                        delays=False,
                        measure_pid=None if name == "direct" else t.pid,
                    )
                )
            for name in order:
                print(f"[bench] repeat {repeat + 1}: paced, {LABELS[name]}", file=sys.stderr)
                t = targets["paced"][name]
                raw["paced"][name].append(
                    run_sse(
                        t,
                        paths["paced"][name],
                        streams=mode.paced_streams,
                        stagger_ms=mode.paced_interval_ms,
                        seconds=mode.sse_seconds,
                        delays=True,
                        measure_pid=None if name == "direct" else t.pid,
                    )
                )
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine_load"] = other_load(before, cpu_counters())
        results["timed"] = timed_breakdown(mode, children, work, upstreams, api_key, secret)
        results["raw"] = raw
        results["chat"] = summarize_latency(raw["chat"])
        results["sse"] = summarize_sse(raw["sse"], mode.sat_streams, mode.sat_events)
        results["paced"] = summarize_sse(raw["paced"], mode.paced_streams, mode.paced_events)
    finally:
        children.close()
    # the daemons are stopped: their logs are complete
    results["access_log"] = {name: read_access_log(log) for name, log in logs.items()}
    results["micro_us"] = micro_costs()
    return results


def summarize_latency(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    per = {n: {m: [r["latency_us"][m] for r in raw[n]] for m in ("p50", "p99")} for n in NAMES}
    added = {
        n: {
            m: [a - b for a, b in zip(per[n][m], per["direct"][m], strict=True)]
            for m in ("p50", "p99")
        }
        for n in NAMES
        if n != "direct"
    }
    out: dict[str, Any] = {
        "latency_us": {n: {m: figure(per[n][m]) for m in per[n]} for n in NAMES},
        "added_us": {n: {m: figure(v) for m, v in added[n].items()} for n in added},
        "ratios": {},
    }
    for num, den in (("on", "off"), ("on", "relay"), ("off", "relay")):
        out["ratios"][f"{num}/{den}"] = {
            m: ratio_figure(added[num][m], added[den][m], 3) for m in ("p50", "p99")
        }
    out["on_minus_off_us"] = {
        m: figure([a - b for a, b in zip(added["on"][m], added["off"][m], strict=True)], 1)
        for m in ("p50", "p99")
    }
    out["all_ok"] = all(
        not r["errors"] and set(r["statuses"]) == {"200"} and not r["timed_out"]
        for rs in raw.values()
        for r in rs
    )
    return out


def summarize_sse(
    raw: dict[str, list[dict[str, Any]]], streams: int, events: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"per_target": {}, "ratios": {}}
    for n in NAMES:
        rs = raw[n]
        entry: dict[str, Any] = {
            "events_per_s": figure([r["events_per_s"] for r in rs]),
            "usage_chunks_per_stream": round(
                sum(r["usage_chunks"] for r in rs) / max(sum(r["streams_complete"] for r in rs), 1),
                3,
            ),
        }
        if n != "direct":
            entry["server_cpu_pct"] = figure([r["server_cpu_pct"] for r in rs])
            entry["server_cpu_us_per_event"] = figure([r["server_cpu_us_per_event"] for r in rs], 1)
        if rs[0].get("delay_us"):
            entry["delay_p50_us"] = figure([r["delay_us"]["p50"] for r in rs])
            entry["delay_p99_us"] = figure([r["delay_us"]["p99"] for r in rs])
        out["per_target"][n] = entry
    rate = {n: [r["events_per_s"] for r in raw[n]] for n in NAMES}
    cpu = {n: [r["server_cpu_us_per_event"] for r in raw[n]] for n in NAMES if n != "direct"}
    for num, den in (("on", "off"), ("on", "relay"), ("off", "relay"), ("on", "direct")):
        out["ratios"][f"events_per_s {num}/{den}"] = ratio_figure(rate[num], rate[den], 3)
    for num, den in (("on", "off"), ("on", "relay"), ("off", "relay")):
        out["ratios"][f"cpu_per_event {num}/{den}"] = ratio_figure(cpu[num], cpu[den], 3)
    out["on_minus_off_cpu_us_per_event"] = figure(
        [a - b for a, b in zip(cpu["on"], cpu["off"], strict=True)], 1
    )
    out["all_ok"] = all(
        not r["errors"]
        and set(r["statuses"]) == {"200"}
        and not r["timed_out"]
        and r["streams_complete"] == streams
        and r["events_per_stream_min"] == events
        for rs in raw.values()
        for r in rs
    )
    return out


# --- the report ---------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "within 10%" if ok else "**over 10%**"


def render(data: dict[str, Any]) -> str:
    r, m, c = data["results"], data["settings"], data["checks"]
    lines = [
        f"# aroutd usage metering: on vs off ({data['mode']})",
        "",
        f"`{data['command']}`, {data['date']}, {data['duration_s']:.0f} s. "
        f"{data['machine']['usable_cores']} cores ({data['machine']['cpu_model']}), "
        f"Python {data['machine']['python']}, loopback, fixed upstream: {r.get('upstream', '?')}. "
        f"{m['repeats']} repeats, targets interleaved; figures: median (min–max) over the repeats.",
        "",
        f"- on: `{c['on_import']}` (HEAD {c['head']}"
        + (f"; uncommitted changes in aroutd/: {c['on_dirty']}" if c["on_dirty"] else "")
        + ")",
        f"- off: `{c['off_import']}` (`git archive {OFF_COMMIT}`; "
        f"`aroutd/usage` in that tree: {'yes' if c['off_has_usage'] else 'no'})",
        "",
    ]
    ch = r.get("chat")
    if ch:
        lines += [
            f"## 1. Non-streamed chat completion at c=1 ({m['latency_n']} requests per run)",
            "",
            "| target | p50 µs | p99 µs | added p50 µs | added p99 µs |",
            "|---|---|---|---|---|",
        ]
        for n in NAMES:
            lat, add = ch["latency_us"][n], ch["added_us"].get(n)
            cells = [lat["p50"]["text"], lat["p99"]["text"]]
            cells += [add["p50"]["text"], add["p99"]["text"]] if add else ["", ""]
            lines.append(f"| {LABELS[n]} | " + " | ".join(cells) + " |")
        lines += ["", "| ratio of added latency | p50 | p99 |", "|---|---|---|"]
        for key in ("on/off", "on/relay", "off/relay"):
            q = ch["ratios"][key]
            lines.append(f"| {key} | {q['p50']['text']} | {q['p99']['text']} |")
        d = ch["on_minus_off_us"]
        ratio = ch["ratios"]["on/off"]["p50"]["median"]
        lines += [
            f"| on − off, µs | {d['p50']['text']} | {d['p99']['text']} |",
            "",
            f"Added p50 on/off = {ratio:.3f}: {_verdict(ratio <= 1.10)}. "
            f"Every response 200: {'yes' if ch['all_ok'] else 'NO'}.",
            "",
        ]
    for key, title in (
        (
            "sse",
            f"## 2. SSE throughput: {m['sat_streams']} streams x {m['sat_events']} events, "
            "no pause between events",
        ),
        (
            "paced",
            f"## 3. SSE paced: {m['paced_streams']} streams x {m['paced_events']} events, one "
            f"every {m['paced_interval_ms']:g} ms per stream "
            f"({m['paced_streams'] * 1000 / m['paced_interval_ms']:,.0f} events/s offered)",
        ),
    ):
        s = r.get(key)
        if not s:
            continue
        paced = key == "paced"
        head = "| target | events/s | server CPU % of a core | server CPU µs/event "
        head += "| delay p50 µs | delay p99 µs " if paced else ""
        head += "| usage chunks per stream (client) |"
        lines += [title, "", head, "|---" * (head.count("|") - 1) + "|"]
        for n in NAMES:
            e = s["per_target"][n]
            cells = [e["events_per_s"]["text"]]
            cells += (
                [e["server_cpu_pct"]["text"], e["server_cpu_us_per_event"]["text"]]
                if n != "direct"
                else ["(upstream + client only)", ""]
            )
            if paced:
                cells += [e["delay_p50_us"]["text"], e["delay_p99_us"]["text"]]
            cells.append(f"{e['usage_chunks_per_stream']:g}")
            lines.append(f"| {LABELS[n]} | " + " | ".join(cells) + " |")
        lines += ["", "| ratio | median (min–max) |", "|---|---|"]
        for name, q in s["ratios"].items():
            lines.append(f"| {name} | {q['text']} |")
        lines.append(f"| CPU µs/event on − off | {s['on_minus_off_cpu_us_per_event']['text']} |")
        rate = s["ratios"]["events_per_s on/off"]["median"]
        cpu = s["ratios"]["cpu_per_event on/off"]["median"]
        verdict = (
            f"CPU per event on/off = {cpu:.3f}: {_verdict(cpu <= 1.10)}"
            if paced
            else f"events/s on/off = {rate:.3f}: {_verdict(rate >= 0.90)}; "
            f"CPU per event on/off = {cpu:.3f}"
        )
        lines += [
            "",
            f"{verdict}. Every stream complete, every event counted, every response 200: "
            f"{'yes' if s['all_ok'] else 'NO'}.",
            "",
        ]
    al = r.get("access_log")
    if al:
        lines += [
            "## 4. Did metering run? (access logs, all requests of the run)",
            "",
            "| daemon | access lines | with `usage` | with `cost` > 0 |",
            "|---|---|---|---|",
        ]
        for n in ("off", "on"):
            a = al[n]
            lines.append(f"| {LABELS[n]} | {a['lines']} | {a['with_usage']} | {a['with_cost']} |")
        ex = al["on"].get("example")
        if ex:
            lines += ["", f'An "on" line: `{json.dumps(ex)}`.']
        lines.append("")
    tm = r.get("timed")
    if tm:
        lines += [
            '## 5. Where the time goes: the metering calls timed inside an "on" daemon',
            "",
            'A separate "on" daemon with each call wrapped in `perf_counter_ns` (~0.3 µs '
            "per call of its own), one run of each workload; µs per call, and in all per "
            "request (non-streamed) or per relayed event (SSE).",
            "",
            "| call | non-streamed: µs/call | µs/request | SSE throughput: µs/call "
            "| µs/event | SSE paced: µs/call | µs/event |",
            "|---|---|---|---|---|---|---|",
        ]
        for *_, label in TIMED_CALLS:
            cells = []
            for phase in ("chat", "sse", "paced"):
                x = tm.get(phase, {}).get("calls", {}).get(label)
                cells += [f"{x['us_per_call']:.2f}", f"{x['us_per_unit']:.2f}"] if x else ["", ""]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        total = []
        for phase in ("chat", "sse", "paced"):
            calls = tm.get(phase, {}).get("calls", {})
            top = sum(v["us_per_unit"] for k, v in calls.items() if "within" not in k)
            total += ["", f"**{top:.1f}**"]
        lines += ["| all but the line within account | " + " | ".join(total) + " |", ""]
    if r.get("micro_us"):
        lines += [
            "## 6. The metering pieces alone, in a tight loop (this checkout, in-process)",
            "",
            "| piece | µs per call |",
            "|---|---|",
            *(f"| {k} | {v:.2f} |" for k, v in r["micro_us"].items()),
            "",
        ]
    if r.get("machine_load"):
        load = r["machine_load"]
        lines += [
            f"Measured part: {r['seconds']} s; other processes used {load['other_pct']}% "
            f"of the cores, the host stole {load['steal_pct']}%.",
            "",
        ]
    if data["notes"]:
        lines += ["Notes:", "", *(f"- {n}" for n in data["notes"]), ""]
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_metering", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (~1 min)")
    parser.add_argument("--repeats", type=int, help="override the mode's repeat count")
    parser.add_argument("--out", type=Path, help="report directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    # the SSE client subprocess
    parser.add_argument("--sse-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--path", default=CHAT_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--header", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--stagger-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--delays", action="store_true", help=argparse.SUPPRESS)
    # the pre-framed SSE upstream subprocess
    parser.add_argument("--fast-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=1000, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--timed-serve"]:
        return timed_serve(argv[1], argv[2:])
    args = _parse(argv)
    if args.fast_upstream is not None:
        trio.run(_fast_upstream, args.fast_upstream, args.events)
        return 0
    if args.sse_client is not None:
        args.port = args.sse_client
        sys.stdout.write(json.dumps(trio.run(_sse_client, args)) + "\n")
        return 0
    mode = MODES["quick" if args.quick else "full"]
    if args.repeats:
        mode = dataclasses.replace(mode, repeats=args.repeats)
    started, counters = dt.datetime.now(dt.UTC), cpu_counters()
    if args.no_pin:
        disable_pinning()
    if pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[CLIENT_CPU % len(USABLE_CPUS)]})
    notes: list[str] = []
    if not pin_available():
        notes.append("processes are not pinned (--no-pin, or fewer than 2 usable cores)")
    with work_dir("aroutd-bench-metering-", args.keep, notes) as work:
        off_tree = extract_off_tree(work / "off-tree")
        checks: dict[str, Any] = {
            "off_tree": off_tree,
            "off_has_usage": (off_tree / "aroutd" / "usage").exists(),
            "off_import": imported_from(off_tree),
            "on_import": imported_from(REPO_ROOT),
            "on_has_usage": (REPO_ROOT / "aroutd" / "usage").exists(),
            "head": _git("rev-parse", "--short", "HEAD"),
            "on_dirty": ", ".join(
                line[3:] for line in _git("status", "--porcelain", "--", "aroutd").splitlines()
            ),
        }
        if checks["off_has_usage"] or not checks["off_import"].startswith(str(off_tree)):
            raise SystemExit(f"the off tree is not {OFF_COMMIT}'s: {checks}")
        if not checks["on_has_usage"] or not checks["on_import"].startswith(str(REPO_ROOT)):
            raise SystemExit(f"the on tree has no metering: {checks}")
        results = run(mode, work, notes, checks)
    checks["off_tree"] = str(checks["off_tree"])
    notes.append(load_note(counters))
    binary = nginx.nginx_binary()
    machine = report.machine_info({"nginx": nginx.version(binary) if binary else None})
    machine["usable_cores"] = len(USABLE_CPUS)
    data = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.bench_metering", *argv]),
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "mode": mode.name,
        "machine": machine,
        "settings": dataclasses.asdict(mode),
        "checks": checks,
        "results": results,
        "notes": notes,
    }
    out = args.out or OUT_DIR / f"metering-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    text = render(data)
    (out / "report.md").write_text(text)
    print(text)
    print(f"[bench] report: {out / 'report.json'}", file=sys.stderr)
    al = results.get("access_log", {})
    ok = (
        results.get("chat", {}).get("all_ok", False)
        and results.get("sse", {}).get("all_ok", False)
        and results.get("paced", {}).get("all_ok", False)
        and al.get("on", {}).get("with_usage", 0) == al.get("on", {}).get("lines", -1)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
