"""The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer
sends before the client's bytes, naming the client's address (SPEC §2 proxy_protocol).

Pure: :func:`parse_proxy_header` takes the bytes seen so far and returns the
header with its length, None while it is incomplete, or raises BadRequest.
Whether the named address is believed is the caller's business (only from
``trusted_proxies``, SPEC §12).

- v1: ``PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n``, at most 107 bytes.
- v2: a 12-byte signature, version/command, family/protocol, a 16-bit length,
  then the addresses (and TLVs, skipped). LOCAL and UNSPEC carry no address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aroutd.errors import BadRequest

__all__ = ["MAX_V1_BYTES", "MAX_V2_BYTES", "V2_SIGNATURE", "ProxyHeader", "parse_proxy_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_V1_BYTES = 107
MAX_V2_BYTES = 16 + 1024  # addresses and a few TLVs; more is not a load balancer we know


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    source: str | None  # the client's address; None for UNKNOWN / LOCAL / UNSPEC
    length: int  # bytes the header takes, to be consumed before HTTP (or TLS) starts


def _bad() -> BadRequest:
    return BadRequest("invalid PROXY protocol header", close=True)


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while incomplete; BadRequest if it is not one."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(b"PROXY "):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or b"PROXY ".startswith(data):
        return None  # still a prefix of either
    raise _bad()


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, MAX_V1_BYTES)
    if end < 0:
        if len(data) >= MAX_V1_BYTES:
            raise _bad()
        return None
    parts = data[:end].split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(source=None, length=end + 2)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise _bad()
    try:
        src = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        ports = [int(p) for p in parts[4:6]]
    except (ValueError, UnicodeDecodeError):
        raise _bad() from None
    if src.version != (4 if parts[1] == b"TCP4" else 6) or not all(0 <= p <= 65535 for p in ports):
        raise _bad()
    if any(p != str(int(p)).encode() for p in parts[4:6]):  # no "+1", "01"
        raise _bad()
    return ProxyHeader(source=str(src), length=end + 2)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    ver_cmd, fam, size = data[12], data[13], int.from_bytes(data[14:16], "big")
    if ver_cmd >> 4 != 2 or ver_cmd & 0x0F not in (0, 1) or 16 + size > MAX_V2_BYTES:
        raise _bad()
    if len(data) < 16 + size:
        return None
    length = 16 + size
    if ver_cmd & 0x0F == 0:  # LOCAL: the proxy's own connection (health checks)
        return ProxyHeader(source=None, length=length)
    family = fam >> 4
    body = data[16:length]
    if family == 1 and size >= 12:  # AF_INET: src, dst, sport, dport
        return ProxyHeader(source=str(ipaddress.IPv4Address(body[:4])), length=length)
    if family == 2 and size >= 36:  # AF_INET6
        return ProxyHeader(source=str(ipaddress.IPv6Address(body[:16])), length=length)
    if family in (0, 3):  # UNSPEC, AF_UNIX: no IP address to believe
        return ProxyHeader(source=None, length=length)
    raise _bad()
