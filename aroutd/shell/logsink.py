"""Where log lines go: stderr (journald under systemd), one write per line.

A broken log stream (closed, full disk) never fails a request or stops the
daemon: the line is dropped. The lines themselves are :mod:`aroutd.accesslog`'s.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from aroutd.accesslog import AccessRecord, format_event, format_line

__all__ = ["event", "write"]


def write(rec: AccessRecord, stream: TextIO | None = None) -> None:
    """One access-log line."""
    _emit(format_line(rec), stream, flush=False)


def event(name: str, stream: TextIO | None = None, **fields: Any) -> None:
    """A daemon event line, stamped now and flushed at once."""
    _emit(format_event(name, datetime.now(UTC), **fields), stream, flush=True)


def _emit(line: str, stream: TextIO | None, *, flush: bool) -> None:
    out = stream if stream is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):  # a broken log must not take requests down
        out.write(line)
        if flush:
            out.flush()
