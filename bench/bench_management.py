"""Management API benchmark (SPEC §7): key writes, stored keys on the proxy path, write load.

    python -m bench.bench_management [--quick] [--keep] [--out DIR] [--no-pin]

One process tree on loopback: the fixed upstream (nginx when installed, else
``bench.upstream``), the bare relay and one aroutd whose key table holds the bench
API key and a management key (``type = "management"``, tenant ``bench``). The server
under test is pinned to core 0, this process, the clients and the upstream to core 1,
as in ``python -m bench``. Measured, R repeats each (median, min-max):

1. sequential ``POST /api/v1/keys`` on one keep-alive connection after a warm-up:
   creates/s and p50/p99 of one create; then ``PATCH /api/v1/keys/{hash}`` (a new name)
   of each created key, the same way;
2. c=1 latency of the small chat request of scenario (a) (``bench.loadgen`` latency, the
   same client for every target): upstream direct, bare relay, aroutd with the file key
   and aroutd with a key created over the API; added p50/p99 over direct, and the ratios
   of the added figures file/relay, store/relay and store/file;
3. the same file-key measurement while a second client (``--writer``, a subprocess on
   core 1) loops create, patch, create, patch... on its own connection: paced at
   ``--paced-rate`` writes/s, and unpaced (the next write as soon as the last answered);
   added p50/p99, as ratios to the bare relay's, and the write rate achieved.

All the latency runs of a repeat are interleaved (their order rotates per repeat), so
drift hits them alike. Output: the markdown report on stdout, and
``bench/out/management-DATE/report.json``. Full: about 2 minutes; ``--quick``: ~40 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import trio

from bench import drivers
from bench.aroutd_setup import new_api_key, sha256_hex, write_keytable
from bench.compare import (
    Condition,
    envelope,
    figure,
    header_lines,
    interleaved,
    latency_run,
    notes_lines,
    pin_this_process,
    run_ok,
    summarize_latency,
    write_report,
)
from bench.procs import Child, Children, cpu_counters, load_note, other_load, work_dir
from bench.settings import CLIENT_CPU, REPO_ROOT
from bench.stats import summary_us
from bench.targets import python_env, start_aroutd, start_fixed_upstream, start_relay

__all__ = ["main"]

OUT_DIR = REPO_ROOT / "bench" / "out"
MGMT_KEY_ENV = "BENCH_MGMT_KEY"
MGMT_KEY_ID = "bench-admin"
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    name: str
    repeats: int
    writes_n: int  # sequential creates (then as many patches) per repeat
    writes_warmup: int
    latency_n: int  # c=1 requests per latency run
    latency_warmup: int
    latency_seconds: float  # bound of one latency run
    paced_rate: float  # writes per second of the paced load


MODES = {
    "full": Mode(
        name="full",
        repeats=5,
        writes_n=300,
        writes_warmup=30,
        latency_n=2000,
        latency_warmup=200,
        latency_seconds=15.0,
        paced_rate=100.0,
    ),
    "quick": Mode(
        name="quick",
        repeats=3,
        writes_n=100,
        writes_warmup=10,
        latency_n=800,
        latency_warmup=100,
        latency_seconds=8.0,
        paced_rate=100.0,
    ),
}


# --- a small management client (trio + h11, one keep-alive connection) -------------------


class ManagementError(RuntimeError):
    """A management request did not get the expected answer."""


class MgmtClient:
    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.auth = b"Bearer " + key.encode()
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None

    async def call(self, method: bytes, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.conn = h11.Connection(h11.CLIENT)
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = [
            (b"host", b"127.0.0.1:%d" % self.port),
            (b"authorization", self.auth),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(data)),
        ]
        request = h11.Request(method=method, target=path.encode(), headers=headers)
        out = b"".join(
            self.conn.send(e) or b"" for e in (request, h11.Data(data=data), h11.EndOfMessage())
        )
        await self.stream.send_all(out)
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ManagementError("connection closed before the answer ended")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        else:
            await self.close()
        return status, b"".join(chunks)

    async def create(self, name: str) -> tuple[str, str]:
        """POST /api/v1/keys: (hash, the new lr_live_ key)."""
        status, raw = await self.call(b"POST", "/api/v1/keys", {"name": name})
        if status != 201:
            raise ManagementError(f"create answered {status}: {raw[:300]!r}")
        answer = json.loads(raw)
        return str(answer["data"]["hash"]), str(answer["key"])

    async def patch(self, digest: str, name: str) -> None:
        status, raw = await self.call(b"PATCH", f"/api/v1/keys/{digest}", {"name": name})
        if status != 200:
            raise ManagementError(f"patch answered {status}: {raw[:300]!r}")


def _rate_and_latency(latencies_ns: Sequence[int], elapsed_ns: int) -> dict[str, Any]:
    return {
        "count": len(latencies_ns),
        "per_s": round(len(latencies_ns) / max(elapsed_ns, 1) * 1e9, 1),
        "latency_us": summary_us(latencies_ns),
    }


async def _sequential_writes(port: int, key: str, n: int, warmup: int) -> dict[str, Any]:
    """N creates, then a PATCH (new name) of each, one at a time on one connection."""
    client = MgmtClient(port, key)
    try:
        for i in range(warmup):
            digest, _ = await client.create(f"warm-{i}")
            await client.patch(digest, f"warm-{i}-renamed")
        digests, creates = [], []
        start = time.monotonic_ns()
        for i in range(n):
            t0 = time.monotonic_ns()
            digests.append((await client.create(f"seq-{i}"))[0])
            creates.append(time.monotonic_ns() - t0)
        create_ns = time.monotonic_ns() - start
        patches = []
        start = time.monotonic_ns()
        for i, digest in enumerate(digests):
            t0 = time.monotonic_ns()
            await client.patch(digest, f"seq-{i}-renamed")
            patches.append(time.monotonic_ns() - t0)
        patch_ns = time.monotonic_ns() - start
    finally:
        await client.close()
    return {
        "create": _rate_and_latency(creates, create_ns),
        "patch": _rate_and_latency(patches, patch_ns),
    }


async def _create_one(port: int, key: str, name: str) -> tuple[str, str]:
    client = MgmtClient(port, key)
    try:
        return await client.create(name)
    finally:
        await client.close()


def run_writes(port: int, key: str, n: int, warmup: int, seconds: float) -> dict[str, Any]:
    async def bounded() -> dict[str, Any]:
        with trio.fail_after(seconds):
            return await _sequential_writes(port, key, n, warmup)

    return trio.run(bounded)


def create_key(port: int, key: str, name: str) -> tuple[str, str]:
    async def bounded() -> tuple[str, str]:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            return await _create_one(port, key, name)

    return trio.run(bounded)


# --- the write-load subprocess (``--writer``) ---------------------------------------------


async def _writer(port: int, key: str, rate: float, seconds: float) -> dict[str, Any]:
    """create, patch (the key just created), create, ... until stdin gets a byte or EOF.

    ``rate`` > 0 paces the writes (never catching up in bursts); 0: each write as soon as
    the previous one answered. Prints ``READY`` once warm, then the JSON result.
    """
    client = MgmtClient(port, key)
    latencies: dict[str, list[int]] = {"create": [], "patch": []}
    errors: dict[str, int] = {}
    with trio.fail_after(REQUEST_TIMEOUT_S):
        digest, _ = await client.create("load-warm")
        await client.patch(digest, "load-warm-renamed")
    print("READY", flush=True)
    start = time.monotonic_ns()

    async def loop() -> None:
        interval = 1.0 / rate if rate > 0 else 0.0
        next_t, pending, i = trio.current_time(), None, 0
        while True:
            if interval:
                next_t += interval
                now = trio.current_time()
                if next_t < now - interval:  # fell behind: restart the schedule, no burst
                    next_t = now
                await trio.sleep_until(next_t)
            t0 = time.monotonic_ns()
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    if pending is None:
                        pending = (await client.create(f"load-{i}"))[0]
                        latencies["create"].append(time.monotonic_ns() - t0)
                    else:
                        await client.patch(pending, f"load-{i}-renamed")
                        latencies["patch"].append(time.monotonic_ns() - t0)
                        pending = None
            except (ManagementError, OSError, trio.TooSlowError, h11.ProtocolError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                await client.close()
                pending = None
            i += 1

    async def stop_on_stdin(scope: trio.CancelScope) -> None:
        await trio.lowlevel.FdStream(0).receive_some(1)
        scope.cancel()

    with trio.move_on_after(seconds) as bound:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_stdin, nursery.cancel_scope)
            nursery.start_soon(loop)
    elapsed_ns = time.monotonic_ns() - start
    await client.close()
    writes = len(latencies["create"]) + len(latencies["patch"])
    return {
        "rate_target": rate,
        "writes": writes,
        "writes_per_s": round(writes / max(elapsed_ns, 1) * 1e9, 1),
        "creates": len(latencies["create"]),
        "patches": len(latencies["patch"]),
        "elapsed_s": round(elapsed_ns / 1e9, 3),
        "errors": errors,
        "timed_out": bound.cancelled_caught,
        "create_us": summary_us(latencies["create"]),
        "patch_us": summary_us(latencies["patch"]),
    }


def start_writer(children: Children, port: int, key: str, rate: float, seconds: float) -> Child:
    argv = [sys.executable, "-m", "bench.bench_management", "--writer-port", str(port)]
    argv += ["--writer-rate", str(rate), "--writer-seconds", str(seconds)]
    child = children.spawn(
        f"writer-{rate:g}",
        argv,
        cpu=CLIENT_CPU,
        env=python_env() | {MGMT_KEY_ENV: key},
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout_pipe=True,
    )
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline().decode()
    if line.strip() != "READY":
        child.stop()
        raise drivers.DriverError(f"writer not ready: {line!r} {child.log_tail()}")
    return child


# --- the runs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadCondition(Condition):
    load: float | None = None  # writes/s of the parallel write load; 0: unpaced; None: none


def _latency_runs(
    mode: Mode, children: Children, conditions: list[LoadCondition], mgmt_key: str
) -> dict[str, Any]:
    """Every condition once per repeat, in an order rotated per repeat."""
    writers: dict[str, list[dict[str, Any]]] = {
        c.name: [] for c in conditions if c.load is not None
    }
    bound = mode.latency_seconds + drivers.MARGIN_S + 10

    def measure(cond: LoadCondition) -> dict[str, Any]:
        writer = None
        if cond.load is not None:
            writer = start_writer(children, cond.target.port, mgmt_key, cond.load, bound)
        try:
            return latency_run(
                cond, n=mode.latency_n, warmup=mode.latency_warmup, seconds=mode.latency_seconds
            )
        finally:
            if writer is not None:
                writers[cond.name].append(drivers.finish_held(writer))

    return {"runs": interleaved(conditions, mode.repeats, measure), "writers": writers}


def _summarize_latency(conditions: list[LoadCondition], raw: dict[str, Any]) -> dict[str, Any]:
    runs = raw["runs"]
    pairs = [("file", "relay"), ("store", "relay"), ("store", "file")]
    pairs += [(c.name, "relay") for c in conditions if c.load is not None]
    pairs += [(c.name, "file") for c in conditions if c.load is not None]
    out = summarize_latency([c.name for c in conditions], runs, pairs)
    out["writers"] = {}
    for name, results in raw["writers"].items():
        out["writers"][name] = {
            "writes_per_s": figure([w["writes_per_s"] for w in results]),
            "create_p50_us": figure([w["create_us"]["p50"] for w in results]),
            "patch_p50_us": figure([w["patch_us"]["p50"] for w in results]),
            "create_p99_us": figure([w["create_us"]["p99"] for w in results]),
            "errors": sum(sum(w["errors"].values()) for w in results),
        }
    out["all_ok"] = all(run_ok(r) for rs in runs.values() for r in rs) and all(
        not w["errors"] for ws in raw["writers"].values() for w in ws
    )
    return out


def _write_keys(directory: Path, api_key: str, mgmt_key: str) -> None:
    """The harness's key table (tenant bench + its key) plus a management key of bench."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "keys.toml"
    write_keytable(keys, api_key)
    with keys.open("a") as f:
        f.write(
            f'[[keys]]\nid = "{MGMT_KEY_ID}"\ntenant = "bench"\ntype = "management"\n'
            f'sha256 = "{sha256_hex(mgmt_key)}"\n\n'
        )


def run(mode: Mode, work: Path, notes: list[str]) -> dict[str, Any]:
    children = Children(log_dir=work / "logs")
    api_key, mgmt_key = new_api_key(), "lr_mgmt_" + os.urandom(24).hex()
    results: dict[str, Any] = {}
    try:
        upstream = start_fixed_upstream(children, work)
        results["upstream"] = upstream.kind
        if upstream.kind != "nginx":
            notes.append("nginx absent: the fixed upstream is the trio one (may bottleneck)")
        relay = start_relay(children, upstream, api_key)
        _write_keys(work / "aroutd", api_key, mgmt_key)
        aroutd, _files, startup_s, _child = start_aroutd(
            children, work / "aroutd", upstream, api_key
        )
        notes.append(f"aroutd started in {startup_s:.2f} s")

        # 1. sequential creates and patches
        started, before = time.monotonic(), cpu_counters()
        writes: list[dict[str, Any]] = []
        for repeat in range(mode.repeats):
            print(f"[bench] writes, repeat {repeat + 1}", file=sys.stderr, flush=True)
            writes.append(
                run_writes(aroutd.port, mgmt_key, mode.writes_n, mode.writes_warmup, 120.0)
            )
        results["writes"] = {
            op: {
                "per_s": figure([w[op]["per_s"] for w in writes]),
                "p50_us": figure([w[op]["latency_us"]["p50"] for w in writes]),
                "p99_us": figure([w[op]["latency_us"]["p99"] for w in writes]),
            }
            for op in ("create", "patch")
        }
        results["writes"]["runs"] = writes
        results["writes"]["seconds"] = round(time.monotonic() - started, 1)
        results["writes"]["machine_load"] = other_load(before, cpu_counters())

        # 2 and 3. the proxy path: file key, stored key, and the file key under write load
        _hash, store_key = create_key(aroutd.port, mgmt_key, "bench-store-key")
        file_headers = aroutd.headers
        conditions = [
            LoadCondition(name="direct", label="upstream direct", target=upstream, headers=()),
            LoadCondition(name="relay", label="bare relay", target=relay, headers=relay.headers),
            LoadCondition(
                name="file", label="aroutd, file key", target=aroutd, headers=file_headers
            ),
            LoadCondition(
                name="store",
                label="aroutd, stored key",
                target=aroutd,
                headers=(f"Authorization: Bearer {store_key}",),
            ),
            LoadCondition(
                name="paced",
                label=f"aroutd, file key, {mode.paced_rate:g} writes/s",
                target=aroutd,
                headers=file_headers,
                load=mode.paced_rate,
            ),
            LoadCondition(
                name="unpaced",
                label="aroutd, file key, unpaced writes",
                target=aroutd,
                headers=file_headers,
                load=0.0,
            ),
        ]
        started, before = time.monotonic(), cpu_counters()
        raw = _latency_runs(mode, children, conditions, mgmt_key)
        results["proxy"] = _summarize_latency(conditions, raw)
        results["proxy"]["labels"] = {c.name: c.label for c in conditions}
        results["proxy"]["runs"] = raw
        results["proxy"]["seconds"] = round(time.monotonic() - started, 1)
        results["proxy"]["machine_load"] = other_load(before, cpu_counters())
    finally:
        children.close()
    return results


# --- the report ---------------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    r, m = data["results"], data["settings"]
    lines = header_lines(data, "aroutd management API benchmark")
    w = r.get("writes")
    if w:
        load = w["machine_load"]
        lines += [
            f"## 1. Sequential writes ({m['writes_n']} per repeat, one keep-alive connection)",
            "",
            "| request | per second | p50 µs | p99 µs |",
            "|---|---|---|---|",
        ]
        for op, label in (("create", "`POST /api/v1/keys`"), ("patch", "`PATCH` (name)")):
            f = w[op]
            lines.append(
                f"| {label} | {f['per_s']['text']} | {f['p50_us']['text']} "
                f"| {f['p99_us']['text']} |"
            )
        lines += [
            "",
            f"Other processes: {load['other_pct']}% of the cores, stolen {load['steal_pct']}%.",
            "",
        ]
    p = r.get("proxy")
    if p:
        labels, load = p["labels"], p["machine_load"]
        lines += [
            f"## 2. Proxy path at c=1: file key vs stored key ({m['latency_n']} requests per run)",
            "",
            "| target | p50 µs | p99 µs | added p50 µs | added p99 µs |",
            "|---|---|---|---|---|",
        ]
        for name in ("direct", "relay", "file", "store"):
            lat, add = p["latency_us"][name], p["added_us"].get(name)
            cells = [lat["p50"]["text"], lat["p99"]["text"]]
            cells += [add["p50"]["text"], add["p99"]["text"]] if add else ["", ""]
            lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
        lines += ["", "| ratio of added latency | p50 | p99 |", "|---|---|---|"]
        for key in ("file/relay", "store/relay", "store/file"):
            q = p["ratios"][key]
            lines.append(f"| {key} | {q['p50']['text']} | {q['p99']['text']} |")
        lines += [
            "",
            "## 3. Proxy path (file key) under management write load",
            "",
            "| condition | added p50 µs | added p99 µs | p50 / relay | p99 / relay "
            "| p50 / no load | p99 / no load | writes/s achieved | create p50 µs | patch p50 µs |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in ("relay", "file", "paced", "unpaced"):
            add = p["added_us"][name]
            rel = p["ratios"].get(f"{name}/relay") if name != "relay" else None
            vs = p["ratios"].get(f"{name}/file")
            wr = p["writers"].get(name)
            label = "aroutd, file key, no load" if name == "file" else labels[name]
            cells = [add["p50"]["text"], add["p99"]["text"]]
            cells += [rel["p50"]["text"], rel["p99"]["text"]] if rel else ["", ""]
            cells += [vs["p50"]["text"], vs["p99"]["text"]] if vs else ["", ""]
            cells += (
                [wr[k]["text"] for k in ("writes_per_s", "create_p50_us", "patch_p50_us")]
                if wr
                else ["", "", ""]
            )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Every response 200 and no write failed: {'yes' if p['all_ok'] else 'NO'}. "
            f"Other processes: {load['other_pct']}% of the cores, stolen {load['steal_pct']}%.",
            "",
        ]
    lines += notes_lines(data)
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown file system"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
            if inside and len(mount) > len(best):
                best, kind = mount, fields[2]
    except (OSError, IndexError):
        pass
    return kind


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_management", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (~40 s)")
    parser.add_argument("--repeats", type=int, help="override the mode's repeat count")
    parser.add_argument("--paced-rate", type=float, help="writes/s of the paced load (100)")
    parser.add_argument("--out", type=Path, help="report directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    # the write-load subprocess
    parser.add_argument("--writer-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--writer-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--writer-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.writer_port is not None:
        key = os.environ[MGMT_KEY_ENV]
        result = trio.run(_writer, args.writer_port, key, args.writer_rate, args.writer_seconds)
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    mode = MODES["quick" if args.quick else "full"]
    if args.repeats:
        mode = dataclasses.replace(mode, repeats=args.repeats)
    if args.paced_rate:
        mode = dataclasses.replace(mode, paced_rate=args.paced_rate)
    started, counters = dt.datetime.now(dt.UTC), cpu_counters()
    notes = pin_this_process(args.no_pin)
    with work_dir("aroutd-bench-mgmt-", args.keep, notes) as work:
        notes.append(f"state store (sqlite, synchronous=FULL) under {work} ({_fs_type(work)})")
        results = run(mode, work, notes)
    notes.append(load_note(counters))
    command = ["python -m bench.bench_management", *(sys.argv[1:] if argv is None else argv)]
    data = envelope(
        command=" ".join(command), started=started, mode=mode, results=results, notes=notes
    )
    out = args.out or OUT_DIR / f"management-{started:%Y%m%d-%H%M%S}"
    write_report(data, out, render(data))
    ok = results.get("proxy", {}).get("all_ok", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
