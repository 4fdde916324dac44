"""The access-log line (SPEC §11): one JSON object per line, every field, UTC milliseconds."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st

from aroutd.accesslog import AccessRecord, format_line
from aroutd.shell.logsink import event, write


def test_line_has_every_field_in_order() -> None:
    rec = AccessRecord(
        time=1_700_000_000.1234, start=1_699_999_999.9, request_id="r", usage={"input": 3}
    )
    line = format_line(rec)
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert list(data) == [
        "time", "start", "request_id", "client", "method", "path", "status", "auth_method",
        "key_id", "wallet", "tenant", "provider", "model", "upstream", "bytes_in", "bytes_out",
        "ttfb_ms", "duration_ms", "usage", "cost", "error", "rate_limit",
    ]  # fmt: skip
    assert data["time"] == "2023-11-14T22:13:20.123+00:00"  # when it ended
    assert data["start"] == "2023-11-14T22:13:19.900+00:00"
    assert data["usage"] == {"input": 3}


def test_write_survives_a_closed_stream_and_events_are_json() -> None:
    closed = io.StringIO()
    closed.close()
    write(AccessRecord(time=0.0), closed)  # no exception: a broken log never fails a request
    out = io.StringIO()
    event("reload", out, result="ok", keys=3)
    data = json.loads(out.getvalue())
    assert (data["event"], data["result"], data["keys"]) == ("reload", "ok", 3)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_line_times_are_the_isoformat_of_the_timestamps(ts: float) -> None:
    from datetime import UTC, datetime

    data = json.loads(format_line(AccessRecord(time=ts, start=ts)))
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    assert data["time"] == data["start"] == expected
