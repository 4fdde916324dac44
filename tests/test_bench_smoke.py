"""Smoke tests of the benchmark harness (bench/): it runs, counts right, and cleans up.

No timing assertions: the machine is shared. Scenario (a) and (b) run in their
``--smoke`` size (a few seconds) as a subprocess, once with the bare relay and
once with aroutd; wrk is used when installed (else the trio client, which the
report says), nginx when installed (else the trio fixed-response upstream).
The relay and the upstream are also driven in-process with a real h11 client.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
bare_relay = importlib.import_module("bench.bare_relay")
upstream = importlib.import_module("bench.upstream")
stats = importlib.import_module("bench.stats")
compare = importlib.import_module("bench.compare")

KEY = "lr_live_" + "ab" * 24
SMOKE_TIMEOUT_S = 90


def _leftovers(mark: str, work: Path) -> list[str]:
    """Processes left by a harness run: its children inherit ``mark`` in their environment,
    except nginx, which rewrites it; nginx's title still shows its prefix under ``work``."""
    needle, found = f"BENCH_SMOKE_MARK={mark}".encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if needle in (entry / "environ").read_bytes() or str(work).encode() in cmdline:
                    found.append(cmdline.decode(errors="replace"))
            except OSError:
                continue
    return found


def _run_smoke(tmp_path: Path, *flags: str, disable: str = "") -> dict[str, Any]:
    mark, work = uuid.uuid4().hex, tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), BENCH_SMOKE_MARK=mark, TMPDIR=str(work))
    env["BENCH_DISABLE"] = disable
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path / "out"), *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _leftovers(mark, work) == []  # every child was killed
    assert (
        (tmp_path / "out" / "report.md").read_text().startswith("# aroutd benchmark (smoke mode)")
    )
    report: dict[str, Any] = json.loads((tmp_path / "out" / "report.json").read_text())
    return report


def _check_a_b(
    report: dict[str, Any], proxies: list[str], *, tool: str, upstream_kind: str
) -> None:
    assert report["mode"] == "smoke"
    assert set(report["scenarios"]) == {"a", "b"}
    a, b = report["scenarios"]["a"], report["scenarios"]["b"]
    assert a["targets"] == ["direct", *proxies]
    for target in ("direct", *proxies):
        (run,) = a["runs"][target]
        assert run["count"] == 200
        assert run["statuses"] == {"200": 200}
        assert run["errors"] == {}
        assert len(a["quantiles_us"][target]) == stats.QUANTILE_POINTS
        assert set(a["metrics"][target]) == {"p50_us", "p90_us", "p99_us", "rps"}
    for proxy in proxies:
        assert set(a["added"][proxy]) == {"p50_us", "p90_us", "p99_us"}
    assert b["tool"] == tool
    for target in ("direct", *proxies):
        runs = b["runs"][target]
        assert [r["concurrency"] for r in runs] == [1, 8]
        for r in runs:
            assert r["requests"] > 0
            assert (r["errors"], r["non_2xx"]) == (0, 0)
    assert a["upstream"] == upstream_kind
    assert a["all_ok"] is True
    assert b["all_ok"] is True


def _has(tool: str) -> bool:
    return bool(shutil.which(tool)) or Path(f"/usr/sbin/{tool}").exists()


@pytest.mark.slow
def test_smoke_relay_and_aroutd(tmp_path: Path) -> None:
    """With whatever this machine has: wrk and nginx when installed."""
    report = _run_smoke(tmp_path)
    tool = "wrk" if _has("wrk") else "loadgen"
    _check_a_b(
        report, ["relay", "aroutd"], tool=tool, upstream_kind="nginx" if _has("nginx") else "trio"
    )
    assert report["machine"]["cores"] == os.cpu_count()
    checks = {t["target"]: t for t in report["targets"]}
    assert len(checks) == 8
    p99 = checks["added p99 at c=1 under 2 ms"]
    assert p99["value"] == report["scenarios"]["a"]["added"]["aroutd"]["p99_us"]["median"]
    assert (p99["limit"], p99["op"], p99["met"]) == (2000.0, "<", p99["value"] < 2000.0)
    assert checks["SSE added delay p99 under 5 ms with 500 streams"]["met"] is None  # not run


@pytest.mark.slow
def test_smoke_without_wrk_and_nginx(tmp_path: Path) -> None:
    """The fallbacks: the trio client measures req/s, the trio upstream answers."""
    report = _run_smoke(tmp_path, "--no-aroutd", disable="wrk,nginx")
    _check_a_b(report, ["relay"], tool="loadgen", upstream_kind="trio")
    assert report["machine"]["wrk"] is None
    assert report["machine"]["nginx"] is None
    assert any(note.startswith("wrk absent") for note in report["notes"])
    assert any(note.startswith("nginx absent") for note in report["notes"])


async def _exchange(
    port: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    head = [(b"host", b"x"), (b"content-length", b"%d" % len(body)), *headers]
    request = h11.Request(method="POST", target="/v1/chat/completions", headers=head)
    out = conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(out)
    status, response_headers, data = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status, response_headers = event.status_code, dict(event.headers)
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage):
            await stream.aclose()
            return status, response_headers, data


@pytest.mark.parametrize(
    ("auth", "body", "status", "expected"),
    [
        pytest.param(f"Bearer {KEY}", upstream.REQUEST_BODY, 200, upstream.FIXED_BODY, id="key-ok"),
        pytest.param(
            "Bearer lr_live_wrong", upstream.REQUEST_BODY, 401, bare_relay.DENIED, id="bad-key"
        ),
        pytest.param("", upstream.REQUEST_BODY, 401, bare_relay.DENIED, id="no-key"),
        pytest.param(f"Bearer {KEY}", upstream.SSE_REQUEST_BODY, 200, None, id="sse"),
    ],
)
async def test_bare_relay_in_process(
    monkeypatch: pytest.MonkeyPatch, auth: str, body: bytes, status: int, expected: bytes | None
) -> None:
    monkeypatch.setattr(bare_relay, "KEY", f"Bearer {KEY}".encode())
    async with trio.open_nursery() as nursery:
        up_port = await nursery.start(
            lambda task_status: upstream.serve(
                0, events=3, interval_s=0.001, task_status=task_status
            )
        )
        listeners = await nursery.start(trio.serve_tcp, lambda s: bare_relay.relay(up_port, s), 0)
        port = listeners[0].socket.getsockname()[1]
        headers = [(b"authorization", auth.encode())] if auth else []
        got_status, got_headers, data = await _exchange(port, headers, body)
        assert got_status == status
        if expected is not None:
            assert data == expected
            assert got_headers[b"content-type"] == b"application/json"
        else:
            assert got_headers[b"content-type"] == b"text/event-stream"
            assert data.count(b'"t_ns":') == 3
            assert data.endswith(b"data: [DONE]\n\n")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("values", "p50", "p99"),
    [
        pytest.param([1000 * i for i in range(1, 101)], 51.0, 100.0, id="1-to-100us"),
        pytest.param([5000], 5.0, 5.0, id="single"),
    ],
)
def test_summary_percentiles(values: list[int], p50: float, p99: float) -> None:
    summary = stats.summary_us(values)
    assert (summary["p50"], summary["p99"], summary["count"]) == (p50, p99, len(values))


def test_spread_median_and_range() -> None:
    assert stats.spread([10.0, 12.0, 11.0]) == {
        "median": 11.0,
        "min": 10.0,
        "max": 12.0,
        "spread_pct": 9.1,
        "runs": [10.0, 12.0, 11.0],
    }


def test_compare_figures_and_rotation() -> None:
    """The shared helpers of the one-run comparisons (bench_management, bench_ratelimit)."""
    assert compare.figure([1000.0, 1500.0, 1200.0])["text"] == "1,200 (1,000–1,500)"
    assert compare.figure([3.14159], 2)["text"] == "3.14"
    ratio = compare.ratio_figure([2.0, 3.0, 5.0], [2.0, 2.0, 0.0])
    assert ratio["runs"][:2] == [1.0, 1.5]
    assert ratio["runs"][2] != ratio["runs"][2]  # NaN where the denominator is 0
    assert [compare.rotated("abc", r) for r in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_callgrind_takes_the_background_off_and_reads_real_dumps(tmp_path: Path) -> None:
    """bench.callgrind: a phase's count less the idle rate × its seconds, per request; the
    total read from a dump valgrind really wrote."""
    callgrind = importlib.import_module("bench.callgrind")
    raw = {"a": [(1_000_000, 2.0), (1_100_000, 4.0)], "b": [(1_200_000, 2.0), (1_200_000, 2.0)]}
    got = callgrind.summarize(raw, [40_000.0, 60_000.0], 100, 2)
    assert got["per_request"] == {"a": [9_000.0, 9_000.0], "b": [11_000.0, 11_000.0]}  # 50k/s
    assert got["raw_per_request"]["a"] == [10_000.0, 11_000.0]
    with pytest.raises(ValueError, match="no instruction total"):
        callgrind.total_of(b"events: Ir\n")
    if not callgrind.available():
        pytest.skip("valgrind is not installed")
    out = tmp_path / "cg.out"
    subprocess.run([*callgrind.prefix(out), "true"], check=True, capture_output=True, timeout=60)
    assert callgrind.total_of(out.read_bytes()) > 10_000  # even `true` runs the loader
