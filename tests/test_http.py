"""HTTP/1.1 on the client side: framing, limits, timeouts, smuggling (SPEC §2, §12).

Raw bytes over real loopback sockets, so nothing about the client library can
hide what the daemon does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from .support import daemon, raw_exchange


def _head(key: str, target: str = "/v1/chat/completions", extra: str = "") -> str:
    return f"POST {target} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n{extra}"


def _split(resp: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.lower(), body


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
        out = await raw_exchange(h.port, reqs)
        assert out.count(b"HTTP/1.1 200") == 4
        positions = [out.index(f'"target": "/v1/n{i}"'.encode()) for i in range(3)]
        assert positions == sorted(positions)
        assert out.rstrip().endswith(b'{"status":"ok"}')


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
        status, _, _ = _split(await raw_exchange(h.port, raw + chunked))
        assert status == 200
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
                buf += await stream.receive_some(65536)
        assert b"HTTP/1.1 200" in buf
        await stream.aclose()


async def test_expect_100_continue_refused_without_reading_body(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        head = _head(
            "lr_live_" + "2" * 48, extra="content-length: 5000000\r\nexpect: 100-continue\r\n\r\n"
        )
        status, headers, _ = _split(await raw_exchange(h.port, head.encode()))
        assert status == 401
        assert b"connection: close" in headers
        assert b"HTTP/1.1 100" not in headers


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        pytest.param("content-length: 4\r\ntransfer-encoding: chunked\r\n", 400, id="cl-and-te"),
        pytest.param("content-length: 4\r\ncontent-length: 5\r\n", 400, id="two-cl"),
        # h11 refuses any coding but chunked before framing.py sees it: 400 (SPEC §12 allows 501)
        pytest.param("transfer-encoding: gzip, chunked\r\n", 400, id="gzip-te"),
        pytest.param("transfer-encoding: identity\r\n", 400, id="identity-te"),
        pytest.param("content-length: abc\r\n", 400, id="bad-cl"),
    ],
)
async def test_smuggling_framing_rejected_and_closed(
    tmp_path: Path, extra: str, status: int
) -> None:
    async with daemon(tmp_path) as h:
        raw = (
            _head(h.keys.api, extra=extra + "\r\n").encode()
            + b"0\r\n\r\nGET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        out = await raw_exchange(h.port, raw)
        got, headers, body = _split(out)
        assert got == status
        assert b"connection: close" in headers
        assert json.loads(body[: body.index(b"}}") + 2])["error"]["type"] in (
            "invalid_request_error",
            "server_error",
        )
        assert out.count(b"HTTP/1.1") == 1  # the smuggled second request is never answered
        assert h.upstream.requests == []


async def test_oversized_head_in_one_read_is_431(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_header_bytes=1024) as h:
        raw = _head(h.keys.api, extra="x-big: " + "a" * 2000 + "\r\ncontent-length: 0\r\n\r\n")
        status, headers, body = _split(await raw_exchange(h.port, raw.encode()))
        assert status == 431
        assert b"connection: close" in headers
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_oversized_head_streamed_is_431(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_header_bytes=1024) as h:
        raw = "GET /v1/models HTTP/1.1\r\nhost: t\r\nx-big: " + "a" * 5000  # never completes
        status, _, _ = _split(await raw_exchange(h.port, raw.encode()))
        assert status == 431


async def test_body_too_large_is_413(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_body_bytes=100) as h:
        raw = _head(h.keys.api, extra="content-length: 101\r\n\r\n").encode() + b"x" * 101
        status, _, body = _split(await raw_exchange(h.port, raw))
        assert status == 413
        assert json.loads(body) == {
            "error": {"message": "request body too large", "type": "invalid_request_error"}
        }
        chunked = _head(h.keys.api, extra="transfer-encoding: chunked\r\n\r\n").encode()
        chunked += b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n"
        status, _, _ = _split(await raw_exchange(h.port, chunked))
        assert status == 413


async def test_slow_head_is_408(tmp_path: Path) -> None:
    async with daemon(tmp_path, header_timeout_s=0.3) as h:
        with trio.fail_after(3):
            out = await raw_exchange(h.port, b"GET /v1/models HTTP/1.1\r\nhost: t\r\n")
        status, headers, _ = _split(out)
        assert status == 408
        assert b"connection: close" in headers


async def test_silent_connection_just_closes(tmp_path: Path) -> None:
    async with daemon(tmp_path, header_timeout_s=0.3) as h:
        with trio.fail_after(3):
            out = await raw_exchange(h.port, b"")
        assert out == b""


async def test_stalled_body_is_408(tmp_path: Path) -> None:
    async with daemon(tmp_path, body_timeout_s=0.3) as h:
        raw = _head(h.keys.api, extra="content-length: 50\r\n\r\n").encode() + b'{"mo'
        with trio.fail_after(3):
            status, _, body = _split(await raw_exchange(h.port, raw))
        assert status == 408
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_idle_keepalive_closes(tmp_path: Path) -> None:
    async with daemon(tmp_path, idle_timeout_s=0.3) as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        buf = b""
        with trio.fail_after(3):
            while chunk := await stream.receive_some(65536):
                buf += chunk
        assert buf.startswith(b"HTTP/1.1 200")  # ... and then EOF after the idle timeout


async def test_garbage_gets_400_json(tmp_path: Path) -> None:
    async with daemon(tmp_path) as h:
        status, _, body = _split(await raw_exchange(h.port, b"\x00\x01garbage\r\n\r\n"))
        assert status == 400
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_max_connections_closes_at_accept(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_connections=2) as h:
        held = [await trio.open_tcp_stream("127.0.0.1", h.port) for _ in range(2)]
        await trio.sleep(0.1)
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
        assert out.startswith(b"HTTP/1.1 200")
