"""Server instructions per request, counted by callgrind: a figure the machine's pace does
not move.

On this shared 2-core machine one build's req/s moves by 20% between runs a minute apart,
and its CPU time per request as much (bench/results-ratelimit.md), so a budget of a few
percent cannot be settled by time alone. callgrind (valgrind) counts the instructions a
process executes instead: the same work gives the same count, whatever else the machine
is doing.

:func:`measure` drives an aroutd started under :func:`prefix` (``start_aroutd(...,
prefix=...)``; 15-50× slower, it only counts, no cache is simulated): for each condition
(the headers of a request) it sends ``n`` requests on one keep-alive connection between
``callgrind_control --zero`` and ``--dump``, in ``rounds`` with the order rotated. Work
that runs by the clock (the usage flush, trio's timers) is counted too, and under
valgrind a phase lasts seconds: an idle phase before the rounds and one after give that
background rate (instructions per second), and each phase has its rate × its duration
taken off, so what is left is the requests' own work (the correction and the raw counts
are both in the result).
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.compare import rotated

__all__ = ["available", "measure", "prefix", "summarize", "total_of"]

REQUEST_TIMEOUT_S = 60.0  # one request under valgrind
CONTROL_TIMEOUT_S = 120.0
IDLE_S = 5.0
_TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def prefix(out: Path) -> list[str]:
    """The command that runs the server's interpreter under callgrind, dumping to ``out.N``."""
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "--dump-instr=no",
        "--dump-line=no",
    ]


class _Counter:
    """The instruction counter of one process under callgrind."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=CONTROL_TIMEOUT_S,
        )

    def zero(self) -> None:
        self._control("--zero")

    def dump(self) -> int:
        """Instructions executed since the last zero (a new dump file is written)."""
        pattern = f"{self.out.name}.*"
        before = set(self.out.parent.glob(pattern))
        self._control("--dump")
        new = sorted(set(self.out.parent.glob(pattern)) - before, key=lambda p: p.stat().st_mtime)
        if not new:
            raise RuntimeError(f"callgrind wrote no dump for pid {self.pid}")
        total = total_of(new[-1].read_bytes())
        new[-1].unlink()  # half a megabyte each
        return total


def _send(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def measure(
    pid: int,
    out: Path,
    port: int,
    conditions: Mapping[str, Sequence[str]],
    *,
    n: int,
    rounds: int,
    warmup: int,
    path: str,
    body: bytes,
) -> dict[str, Any]:
    """Instructions per request of each condition (``"Name: value"`` header lines), per
    round, with the background rate taken off; and the statuses answered."""
    counter = _Counter(pid, out)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    sent = {
        name: dict(h.split(": ", 1) for h in lines) | {"Content-Type": "application/json"}
        for name, lines in conditions.items()
    }
    statuses: dict[str, dict[int, int]] = {name: {} for name in conditions}

    def idle() -> float:
        counter.zero()
        start = time.monotonic()
        time.sleep(IDLE_S)
        instructions = counter.dump()
        return instructions / (time.monotonic() - start)

    def phase(name: str, count: int) -> float:
        """Send ``count`` requests of ``name``; the seconds they took."""
        start = time.monotonic()
        for _ in range(count):
            status = _send(conn, path, body, sent[name])
            statuses[name][status] = statuses[name].get(status, 0) + 1
        return time.monotonic() - start

    try:
        for name in conditions:  # unmeasured: code paths, caches, the connection
            phase(name, warmup)
        rates = [idle()]
        raw: dict[str, list[tuple[int, float]]] = {name: [] for name in conditions}
        for r in range(rounds):
            for name in rotated(list(conditions), r):
                counter.zero()
                seconds = phase(name, n)
                raw[name].append((counter.dump(), seconds))
        rates.append(idle())
    finally:
        conn.close()
    return summarize(raw, rates, n, rounds) | {"statuses": statuses}


def summarize(
    raw: Mapping[str, Sequence[tuple[int, float]]], rates: Sequence[float], n: int, rounds: int
) -> dict[str, Any]:
    """Per request of each condition, per round: the count less the background rate (the
    mean of ``rates``, instructions per second) times the phase's seconds; and raw."""
    rate = sum(rates) / len(rates)
    return {
        "n": n,
        "rounds": rounds,
        "idle_instructions_per_s": [round(x) for x in rates],
        "per_request": {
            name: [(total - rate * seconds) / n for total, seconds in runs]
            for name, runs in raw.items()
        },
        "raw_per_request": {name: [total / n for total, _ in runs] for name, runs in raw.items()},
        "phase_seconds": {name: [round(s, 2) for _, s in runs] for name, runs in raw.items()},
    }


def total_of(dump: bytes) -> int:
    """The instruction total of a callgrind dump file's text."""
    match = _TOTAL.search(dump)
    if match is None:
        raise ValueError("no instruction total in the dump")
    return int(match.group(1))
