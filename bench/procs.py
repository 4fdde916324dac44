"""Child processes for the harness: spawned pinned to a core, waited on, measured, killed.

Rules: every child starts in its own session (so its whole process group can be
killed by its id), writes stdout/stderr to a log file (never an undrained pipe),
and is registered with a ``Children`` stack that kills it in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "USABLE_CPUS",
    "Child",
    "Children",
    "ReadyTimeout",
    "cpu_counters",
    "disable_pinning",
    "free_port",
    "http_get_status",
    "other_load",
    "pin_available",
    "process_cpu_ns",
    "raise_nofile",
    "rss_kib",
    "tree_cpu_s",
    "tree_pids",
    "wait_http",
    "wait_port",
    "which",
]

STOP_GRACE_S = 3.0


class ReadyTimeout(RuntimeError):
    """A child did not become ready in time (the message names it and its log)."""


# The cores this harness may use, read once at import (before the harness pins itself).
USABLE_CPUS = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()


_PINNING = {"enabled": True}


def disable_pinning() -> None:
    """``--no-pin``: let the scheduler place everything (for a machine shared with others)."""
    _PINNING["enabled"] = False


def pin_available() -> bool:
    """True when pinning is on and two usable cores keep the server and the client apart."""
    return _PINNING["enabled"] and len(USABLE_CPUS) >= 2


def _pin(cpu: int | None) -> None:
    if cpu is not None and pin_available():
        os.sched_setaffinity(0, {USABLE_CPUS[cpu % len(USABLE_CPUS)]})


@dataclass(kw_only=True)
class Child:
    """A running child process (mutable: it owns an OS resource)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the child's process group, then SIGKILL it after a grace period."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_GRACE_S)


@dataclass(kw_only=True)
class Children:
    """The children started by one harness run, killed (newest first) by ``close``."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout_pipe: bool = False,
    ) -> Child:
        """Start ``argv`` pinned to ``cpu`` (None: unpinned), logging to log_dir/name.log."""
        log = self.log_dir / f"{name}.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as log_file:
            proc = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=subprocess.PIPE if stdout_pipe else log_file,
                stderr=log_file,
                cwd=cwd,
                env=dict(os.environ if env is None else env),
                start_new_session=True,
                preexec_fn=lambda: _pin(cpu),
            )
        child = Child(name=name, proc=proc, log=log)
        self.started.append(child)
        return child

    def close(self) -> None:
        while self.started:
            child = self.started.pop()
            with contextlib.suppress(Exception):
                child.stop()

    @contextlib.contextmanager
    def scope(self) -> Iterator[Children]:
        """A nested set of children killed when the block ends (the parent still kills all)."""
        inner = Children(log_dir=self.log_dir)
        try:
            yield inner
        finally:
            inner.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released: good enough for loopback benches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(child: Child, port: int, timeout_s: float) -> float:
    """Wait until 127.0.0.1:port accepts; return the seconds waited."""
    start = time.monotonic()
    while True:
        if not child.alive():
            raise ReadyTimeout(f"{child.name} exited ({child.proc.returncode}): {child.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise ReadyTimeout(f"{child.name} not listening on {port}: {child.log_tail()}")
        time.sleep(0.02)


def http_get_status(
    port: int, path: str, headers: Mapping[str, str] | None = None, timeout_s: float = 2.0
) -> int:
    """Status of one GET on a fresh connection; 0 when the connection fails."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_http(child: Child, port: int, path: str, timeout_s: float) -> float:
    """Wait until GET path answers 200; return the seconds waited."""
    start = time.monotonic()
    while True:
        if not child.alive():
            raise ReadyTimeout(f"{child.name} exited ({child.proc.returncode}): {child.log_tail()}")
        if http_get_status(port, path) == 200:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise ReadyTimeout(f"{child.name}: GET {path} not 200 in time: {child.log_tail()}")
        time.sleep(0.01)


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_cpu_ns(pid: int) -> tuple[int, int]:
    """CPU time of a process: (ns on CPU of its live threads, from schedstat; utime + stime
    in ns, at clock-tick resolution, which also counts threads that have exited)."""
    on_cpu = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(stat[11]) + int(stat[12])
    return on_cpu, ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """utime + stime in seconds of ``root`` and its live descendants (gone ones: 0)."""
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += process_cpu_ns(pid)[1]
    return total / 1e9


def rss_kib(root: int, *, tree: bool = False, field_name: str = "VmRSS") -> int:
    """Resident set size in KiB of ``root`` (with its descendants when ``tree``)."""
    total = 0
    for pid in tree_pids(root) if tree else [root]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) to at least ``wanted``; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def which(name: str) -> str | None:
    """The path of a tool, or None; ``BENCH_DISABLE=wrk,nginx`` hides tools (to try the
    fallbacks, as on a machine without them)."""
    if name in os.environ.get("BENCH_DISABLE", "").split(","):
        return None
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def cpu_counters() -> dict[str, float]:
    """CPU seconds so far: the whole machine busy, stolen by the host, and used by this
    harness (itself, its reaped children, and its live descendants with their reaped ones).

    The difference of two snapshots tells how much *other* work shared the machine with
    a scenario: the main source of noise on a shared 2-core box.
    """
    hz = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    me = os.getpid()
    for pid in tree_pids(me):
        if pid == me:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own += sum(int(x) for x in stat[11:15]) / hz  # utime stime cutime cstime
    return {
        "busy_s": (user + nice + system + irq + softirq) / hz,
        "steal_s": steal / hz,
        "own_s": own,
        "wall_s": time.monotonic(),
    }


@contextlib.contextmanager
def work_dir(prefix: str, keep: bool, notes: list[str]) -> Iterator[Path]:
    """A temp folder for one bench run (configs, child logs), removed afterwards unless
    ``keep`` (then a note says where it is)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            notes.append(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def load_note(before: dict[str, float]) -> str:
    """What else ran on the machine since ``before`` (a ``cpu_counters``), as a note."""
    load = other_load(before, cpu_counters())
    return (
        f"during the run other processes used {load['other_pct']}% of the cores and the host "
        f"stole {load['steal_pct']}% (this harness: {load['own_pct']}%)"
    )


def other_load(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Between two ``cpu_counters``: % of all cores used by other processes, and stolen."""
    wall = max(after["wall_s"] - before["wall_s"], 1e-9)
    cores = max(len(USABLE_CPUS), 1)
    busy = after["busy_s"] - before["busy_s"]
    own = after["own_s"] - before["own_s"]
    return {
        "other_pct": round(max(0.0, busy - own) / (wall * cores) * 100, 1),
        "own_pct": round(own / (wall * cores) * 100, 1),
        "steal_pct": round((after["steal_s"] - before["steal_s"]) / (wall * cores) * 100, 1),
    }
