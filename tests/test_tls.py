"""TLS termination (SPEC §2 tls_cert / tls_key), with a trustme CA."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import trio
import trustme

from .support import Client, bearer, daemon, raw_exchange


async def test_https_listener(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    server_pem = tmp_path / "server.pem"
    async with daemon(tmp_path, tls_cert=server_pem, tls_key=server_pem) as h:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", h.port, ssl_context=ctx)
        c = Client(stream)
        for _ in range(2):  # keep-alive over TLS
            r = await c.request("GET", "/v1/models", [bearer(h.keys.api)])
            assert r.status == 200
        await stream.aclose()
        assert [u.header(b"x-forwarded-proto") for u in h.upstream.requests] == [b"https"] * 2

        # no TLS: the handshake fails and the connection closes, with no HTTP answer
        # (a TLS alert at most); a hang fails here instead of passing
        answer = await raw_exchange(h.port, b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        assert b"HTTP/" not in answer
        assert answer == b"" or answer[:1] == b"\x15", answer  # 0x15: TLS alert record


async def test_proxy_header_comes_before_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    async with daemon(
        tmp_path,
        tls_cert=server_pem,
        tls_key=server_pem,
        proxy_protocol=True,
        trusted_proxies=trusted,
    ) as h:
        tcp = await trio.open_tcp_stream("127.0.0.1", h.port)
        await tcp.send_all(b"PROXY TCP4 198.51.100.4 10.0.0.1 5555 443\r\n")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        tls = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        r = await Client(tls).request("GET", "/v1/models", [bearer(h.keys.api)])
        assert r.status == 200
        [up] = h.upstream.requests
        assert up.header(b"x-forwarded-for") == b"198.51.100.4"
        assert up.header(b"x-forwarded-proto") == b"https"
        await tls.aclose()
