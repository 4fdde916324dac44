"""The access log (SPEC §11): one JSON line per request, and the daemon's event lines.

Fields are filled in as the request goes; :func:`format_line` turns a record
into a line (written to stderr by :mod:`aroutd.shell.logsink`). Never a
credential: paths go through ``redact_query_key`` before they get here, and
only key ids and wallet accounts are recorded.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

__all__ = ["AccessRecord", "format_event", "format_line"]


@dataclass(slots=True, kw_only=True)
class AccessRecord:
    time: float  # wall clock, seconds since the epoch: when the request ended (the line's time)
    start: float = 0.0  # wall clock when its head arrived
    request_id: str = ""
    client: str = ""
    method: str = ""
    path: str = ""  # with query values of `key` redacted
    status: int = 0
    auth_method: str | None = None
    key_id: str | None = None
    wallet: str | None = None
    tenant: str | None = None
    provider: str | None = None
    model: str | None = None
    upstream: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    ttfb_ms: float | None = None
    duration_ms: float = 0.0
    usage: dict[str, int] | None = None
    cost: float | None = None
    error: str | None = None  # our own error message, when we answered with one
    rate_limit: str | None = None  # "rpm" | "rpd" | "tpm": the limit that refused it


_FIELDS = tuple(f.name for f in fields(AccessRecord))
_VALUES = operator.attrgetter(*_FIELDS)
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per line


_second: list[tuple[int, str]] = [(-1, "")]  # the last whole second formatted, and its text


def _iso_ms(ts: float) -> str:
    """``ts`` as RFC 3339 UTC with milliseconds, like ``isoformat(timespec="milliseconds")``;
    the date and time of day are formatted once a second (two per line add up)."""
    whole = int(ts)
    micros = round((ts - whole) * 1e6)  # rounded to microseconds first, as datetime does
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    last, text = _second[0]
    if whole != last:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = (whole, text)
    return f"{text}.{micros // 1000:03d}+00:00"


def format_line(rec: AccessRecord) -> str:
    # not dataclasses.asdict: its deep copy was a measurable share of a request
    data: dict[str, Any] = dict(zip(_FIELDS, _VALUES(rec), strict=True))
    data["time"] = _iso_ms(rec.time)
    data["start"] = _iso_ms(rec.start)
    return _ENCODE(data) + "\n"


def format_event(name: str, when: datetime, **fields: Any) -> str:
    """A daemon event (start, reload, drain...) as one JSON line, like the access log."""
    data = {"time": when.isoformat(timespec="milliseconds"), "event": name, **fields}
    return json.dumps(data, separators=(",", ":"), default=str) + "\n"
