"""systemd integration: sd_notify(3) (READY=1, RELOADING=1, STOPPING=1, STATUS=,
WATCHDOG=1), and the sockets of socket activation (sd_listen_fds(3)).

Each is a no-op outside systemd (no ``$NOTIFY_SOCKET``, ``$LISTEN_FDS`` or
``$WATCHDOG_USEC``), so the daemon runs the same anywhere. The notify datagram
is tiny and local: sent synchronously.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["listen_sockets", "notify", "watchdog_interval_s"]


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. "READY=1", "STATUS=serving") to systemd; False if not under it."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace socket
        path = "\0" + path[1:]
    lines = list(fields)
    if "RELOADING=1" in lines:
        # Type=notify-reload wants the monotonic time alongside RELOADING=1
        lines.append(f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at descriptor 3


def listen_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS), or [] when none.

    Only when LISTEN_PID names this process, as sd_listen_fds(3) requires; the
    variables are then removed so that children do not take the sockets too.
    """
    env = os.environ if environ is None else environ
    try:
        pid, count = int(env.get("LISTEN_PID", "")), int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    return [socket.socket(fileno=fd) for fd in fds]


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec= (WATCHDOG_USEC), the ping interval; None when off."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2_000_000
