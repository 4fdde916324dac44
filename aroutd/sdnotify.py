"""systemd's notify protocol (sd_notify(3)): READY=1, RELOADING=1, STOPPING=1, STATUS=.

A no-op when ``$NOTIFY_SOCKET`` is unset, so the daemon runs the same outside
systemd. The datagram is tiny and local: sent synchronously.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify"]


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
