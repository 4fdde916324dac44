"""PROXY protocol v1/v2: the pure parser (table + hypothesis) and the daemon on loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import BadRequest
from aroutd.proxyproto import V2_SIGNATURE, ProxyHeader, parse_proxy_header

from .support import daemon


def v2(cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


V2_TCP4 = v2(
    1, 0x11, socket.inet_aton("203.0.113.9") + socket.inet_aton("10.0.0.1") + b"\x04\xd2\x00P"
)
V2_TCP6 = v2(
    1, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::7") + bytes(16) + b"\x00\x01\x00\x02"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"PROXY TCP4 203.0.113.9 10.0.0.1 1234 80\r\nGET",
            ProxyHeader("203.0.113.9", 41),
            id="v1-tcp4",
        ),
        pytest.param(
            b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n", ProxyHeader("2001:db8::7", 32), id="v1-tcp6"
        ),
        pytest.param(b"PROXY UNKNOWN\r\n", ProxyHeader(None, 15), id="v1-unknown"),
        pytest.param(b"PROXY TCP4 203.0.113.9 10.0.0.1 12", None, id="v1-incomplete"),
        pytest.param(b"PRO", None, id="prefix"),
        pytest.param(b"", None, id="empty"),
        pytest.param(V2_TCP4 + b"GET / HTTP/1.1", ProxyHeader("203.0.113.9", 28), id="v2-tcp4"),
        pytest.param(V2_TCP6, ProxyHeader("2001:db8::7", 52), id="v2-tcp6"),
        pytest.param(v2(0, 0x00, b""), ProxyHeader(None, 16), id="v2-local"),
        pytest.param(V2_TCP4[:20], None, id="v2-incomplete"),
        pytest.param(V2_SIGNATURE[:5], None, id="v2-prefix"),
    ],
)
def test_parse(data: bytes, expected: ProxyHeader | None) -> None:
    assert parse_proxy_header(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\n", id="plain-http"),
        pytest.param(b"PROXY TCP4 300.1.1.1 10.0.0.1 1 2\r\n", id="bad-ip"),
        pytest.param(b"PROXY TCP4 ::1 10.0.0.1 1 2\r\n", id="family-mismatch"),
        pytest.param(b"PROXY TCP4 1.1.1.1 10.0.0.1 1 99999\r\n", id="bad-port"),
        pytest.param(b"PROXY TCP4 1.1.1.1 10.0.0.1 +1 2\r\n", id="signed-port"),
        pytest.param(b"PROXY TCP4 " + b"1" * 120, id="v1-too-long"),
        pytest.param(V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), id="v2-version-3"),
        pytest.param(V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), id="v2-short-inet"),
        pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff", id="v2-too-large"),
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_proxy_header(data)
    assert info.value.message == "invalid PROXY protocol header"


@settings(max_examples=200)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=60).map(lambda b: b"PROXY " + b),
        st.binary(max_size=60).map(lambda b: V2_SIGNATURE + b),
    )
)
def test_arbitrary_bytes_parse_or_raise_our_error(data: bytes) -> None:
    try:
        header = parse_proxy_header(data)
    except BadRequest:
        return
    if header is not None:
        assert 0 < header.length <= len(data)
        if header.source is not None:
            ipaddress.ip_address(header.source)


async def _exchange(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    out = b""
    with trio.move_on_after(3), contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some(65536):  # a reset counts as closed
            out += chunk
    await stream.aclose()
    return out


REQ = b"GET /v1/models HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer %s\r\n\r\n"


@pytest.mark.parametrize(
    ("trusted", "forwarded_for"),
    [
        pytest.param(True, b"203.0.113.9", id="trusted"),
        pytest.param(False, b"127.0.0.1", id="untrusted"),
    ],
)
async def test_daemon_believes_proxy_header_only_from_trusted(
    tmp_path: Path, trusted: bool, forwarded_for: bytes
) -> None:
    nets = (ipaddress.ip_network("127.0.0.0/8"),) if trusted else ()
    async with daemon(tmp_path, proxy_protocol=True, trusted_proxies=nets) as h:
        for header in (b"PROXY TCP4 203.0.113.9 10.0.0.1 1234 80\r\n", V2_TCP4):
            out = await _exchange(h.port, header + REQ % h.keys.api.encode())
            assert out.startswith(b"HTTP/1.1 200 ")
        assert [r.header(b"x-forwarded-for") for r in h.upstream.requests] == [forwarded_for] * 2
        assert await _exchange(h.port, REQ % h.keys.api.encode()) == b""  # no header: closed
