"""HTTP/1.1 on the client side: framing, limits, timeouts, smuggling (SPEC §2, §12).

Raw bytes over real loopback sockets, so nothing about the client library can
hide what the daemon does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from .support import Reply, daemon, err, only_reply, parse_replies, raw_exchange


def _head(key: str, target: str = "/v1/chat/completions", extra: str = "") -> str:
    return f"POST {target} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n{extra}"


def _assert_error(r: Reply, status: int, message: str, type_: str, *, close: bool) -> None:
    """One of our own errors (SPEC §13), and whether it says the connection closes."""
    assert (r.status, r.json()) == (status, err(message, type_)), r.body
    assert r.header(b"content-type") == b"application/json"
    assert r.header(b"connection") == (b"close" if close else None)


BODY = b'{"model":"gpt-4o"}'


async def test_pipelined_requests_answered_in_order(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        reqs = (
            b"".join(
                (_head(h.keys.api, f"/v1/n{i}", f"content-length: {len(BODY)}\r\n\r\n")).encode()
                + BODY
                for i in range(3)
            )
            + b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )
        replies = parse_replies(await raw_exchange(h.port, reqs))  # closed after the last
        assert [r.status for r in replies] == [200] * 4
        assert [r.json()["target"] for r in replies[:3]] == [f"/v1/n{i}" for i in range(3)]
        assert replies[3].json() == {"status": "ok"}
        assert [r.header(b"connection") for r in replies] == [None, None, None, b"close"]
        assert [u.target for u in h.upstream.requests] == [f"/v1/n{i}".encode() for i in range(3)]
        assert [u.body for u in h.upstream.requests] == [BODY] * 3


async def test_chunked_request_body(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        chunked = (
            b"5\r\n"
            + BODY[:5]
            + b"\r\n"
            + b"%x\r\n" % (len(BODY) - 5)
            + BODY[5:]
            + b"\r\n0\r\n\r\n"
        )
        raw = _head(
            h.keys.api, extra="transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        ).encode()
        r = only_reply(await raw_exchange(h.port, raw + chunked))
        assert r.status == 200
        assert r.json()["body"] == BODY.decode()
        [up] = h.upstream.requests
        assert up.body == BODY
        assert up.header(b"content-length") == str(len(BODY)).encode()
        assert up.header(b"transfer-encoding") is None


async def test_expect_100_continue(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        head = _head(
            h.keys.api, extra=f"content-length: {len(BODY)}\r\nexpect: 100-continue\r\n\r\n"
        )
        await stream.send_all(head.encode())
        with trio.fail_after(3):
            first = await stream.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(BODY)
        buf = b""
        with trio.fail_after(3):
            while b'"target"' not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed early after {buf!r}"
                buf += chunk
        await stream.aclose()
        [r] = parse_replies(first + buf)  # the interim 100 and then the final answer
        assert r.status == 200
        assert r.json()["body"] == BODY.decode()
        [up] = h.upstream.requests
        assert up.body == BODY


async def test_expect_100_continue_refused_without_reading_body(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        head = _head(
            "lr_live_" + "2" * 48, extra="content-length: 5000000\r\nexpect: 100-continue\r\n\r\n"
        )
        out = await raw_exchange(h.port, head.encode())  # answered, then closed
        assert not out.startswith(b"HTTP/1.1 100")  # the body was never asked for
        _assert_error(only_reply(out), 401, "invalid api key", "authentication_error", close=True)
        assert h.upstream.requests == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # h11 takes CL with TE as chunked; framing.py refuses the pair
        pytest.param(
            "content-length: 4\r\ntransfer-encoding: chunked\r\n",
            "invalid request framing",
            id="cl-and-te",
        ),
        # h11 refuses these before framing.py sees them: 400 (SPEC §12 allows 501 for a coding)
        pytest.param(
            "content-length: 4\r\ncontent-length: 5\r\n", "malformed request", id="two-cl"
        ),
        pytest.param("transfer-encoding: gzip, chunked\r\n", "malformed request", id="gzip-te"),
        pytest.param("transfer-encoding: identity\r\n", "malformed request", id="identity-te"),
        pytest.param("content-length: abc\r\n", "malformed request", id="bad-cl"),
    ],
)
async def test_smuggling_framing_rejected_and_closed(
    tmp_path: Path, extra: str, message: str
) -> None:
    async with daemon(tmp_path) as h:
        raw = (
            _head(h.keys.api, extra=extra + "\r\n").encode()
            + b"0\r\n\r\nGET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        # exactly one answer and then EOF: the smuggled second request is never answered
        r = only_reply(await raw_exchange(h.port, raw))
        _assert_error(r, 400, message, "invalid_request_error", close=True)
        assert h.upstream.requests == []


async def test_oversized_head_in_one_read_is_431(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_header_bytes=1024) as h:
        raw = _head(h.keys.api, extra="x-big: " + "a" * 2000 + "\r\ncontent-length: 0\r\n\r\n")
        r = only_reply(await raw_exchange(h.port, raw.encode()))
        _assert_error(r, 431, "request header too large", "invalid_request_error", close=True)
        assert h.upstream.requests == []


async def test_oversized_head_streamed_is_431(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_header_bytes=1024) as h:
        raw = "GET /v1/models HTTP/1.1\r\nhost: t\r\nx-big: " + "a" * 5000  # never completes
        r = only_reply(await raw_exchange(h.port, raw.encode()))  # answered, then closed
        _assert_error(r, 431, "request header too large", "invalid_request_error", close=True)


async def test_body_too_large_is_413(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_body_bytes=100) as h:
        raw = _head(h.keys.api, extra="content-length: 101\r\n\r\n").encode() + b"x" * 101
        r = only_reply(await raw_exchange(h.port, raw))
        _assert_error(r, 413, "request body too large", "invalid_request_error", close=True)
        chunked = _head(h.keys.api, extra="transfer-encoding: chunked\r\n\r\n").encode()
        chunked += b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n"
        r = only_reply(await raw_exchange(h.port, chunked))
        _assert_error(r, 413, "request body too large", "invalid_request_error", close=True)
        assert h.upstream.requests == []


async def test_slow_head_is_408(tmp_path: Path) -> None:
    async with daemon(tmp_path, header_timeout_s=0.3) as h:
        out = await raw_exchange(h.port, b"GET /v1/models HTTP/1.1\r\nhost: t\r\n")
        r = only_reply(out)
        _assert_error(r, 408, "request header timeout", "invalid_request_error", close=True)


async def test_silent_connection_just_closes(tmp_path: Path) -> None:
    async with daemon(tmp_path, header_timeout_s=0.3) as h:
        out = await raw_exchange(h.port, b"")  # raises unless the server closes in time
        assert out == b""


async def test_stalled_body_is_408(tmp_path: Path) -> None:
    async with daemon(tmp_path, body_timeout_s=0.3) as h:
        raw = _head(h.keys.api, extra="content-length: 50\r\n\r\n").encode() + b'{"mo'
        r = only_reply(await raw_exchange(h.port, raw))
        _assert_error(r, 408, "request body timeout", "invalid_request_error", close=True)
        assert h.upstream.requests == []


async def test_idle_keepalive_closes(tmp_path: Path) -> None:
    async with daemon(tmp_path, idle_timeout_s=0.3) as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        buf = b""
        t0 = trio.current_time()
        with trio.fail_after(3):
            while chunk := await stream.receive_some(65536):
                buf += chunk
        waited = trio.current_time() - t0
        await stream.aclose()
        r = only_reply(buf)  # one answer, kept alive, then EOF after the idle timeout
        assert (r.status, r.json()) == (200, {"status": "ok"})
        assert r.header(b"connection") is None
        assert 0.25 <= waited < 2


async def test_garbage_gets_400_json(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        r = only_reply(await raw_exchange(h.port, b"\x00\x01garbage\r\n\r\n"))
        _assert_error(r, 400, "malformed request", "invalid_request_error", close=True)


async def test_max_connections_closes_at_accept(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_connections=2) as h:
        held = [await trio.open_tcp_stream("127.0.0.1", h.port) for _ in range(2)]
        await trio.sleep(0.1)
        # closed at accept: EOF (or a reset) with no answer, well before the timeout
        out = await raw_exchange(
            h.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n", read_timeout=2
        )
        assert out == b""
        for s in held:
            await s.aclose()
        await trio.sleep(0.1)
        out = await raw_exchange(
            h.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )
        r = only_reply(out)
        assert (r.status, r.json()) == (200, {"status": "ok"})
        assert r.header(b"connection") == b"close"


@pytest.mark.parametrize(
    ("request_line", "status_line"),
    [
        pytest.param(b"GET /healthz", b"HTTP/1.1 200 OK\r\n", id="200"),
        pytest.param(b"GET /nowhere", b"HTTP/1.1 404 Not Found\r\n", id="404"),
        pytest.param(b"GET /v1/models", b"HTTP/1.1 401 Unauthorized\r\n", id="401"),
        pytest.param(b"TRACE /v1/models", b"HTTP/1.1 405 Method Not Allowed\r\n", id="405"),
        pytest.param(b"GET /v1/../x", b"HTTP/1.1 400 Bad Request\r\n", id="400"),
    ],
)
async def test_status_lines_carry_their_reason_phrase(
    tmp_path: Path, request_line: bytes, status_line: bytes
) -> None:
    async with daemon(tmp_path) as h:
        out = await raw_exchange(
            h.port, request_line + b" HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )
        assert out.startswith(status_line), out[:80]


async def test_a_relayed_answer_gets_a_reason_phrase_too(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        raw = (
            f"GET /v1/status-418 HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {h.keys.api}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        out = await raw_exchange(h.port, raw)
        assert out.startswith(b"HTTP/1.1 418 I'm a Teapot\r\n"), out[:80]


async def test_access_log_lines_are_stamped_when_the_request_ends(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import json
    from datetime import datetime

    async with daemon(tmp_path) as h:
        capfd.readouterr()
        # an SSE answer that takes ~0.25 s: the line is written, and stamped, after it
        raw = (
            f"GET /v1/sse HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {h.keys.api}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        assert only_reply(await raw_exchange(h.port, raw)).status == 200
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if '"request_id"' in x]
    (line,) = [x for x in lines if x["path"] == "/v1/sse"]
    end, start = datetime.fromisoformat(line["time"]), datetime.fromisoformat(line["start"])
    assert line["duration_ms"] > 200
    assert abs((end - start).total_seconds() * 1000 - line["duration_ms"]) < 5
