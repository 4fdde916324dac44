"""The heads aroutd sends on: upstream request headers and client response headers (SPEC §6).

Upstream request: the client's headers, bytes-exact and in order, minus
- hop-by-hop headers (RFC 9110 §7.6.1) and every header named in ``Connection``;
- the client's credentials (``Authorization``, ``X-Api-Key``, ``X-Goog-Api-Key``,
  a header named like the upstream's ``auth_header``, and the
  ``openai-insecure-api-key.*`` WebSocket subprotocol entry);
- what aroutd sets itself: ``Host``, ``Content-Length``, ``X-Forwarded-For``,
  ``X-Forwarded-Proto``, ``X-Request-Id`` and every ``X-ARouter-*``;
- ``Expect`` (aroutd reads the body itself, so 100-continue ends here);
- ``Forwarded``, ``X-Real-IP``, ``X-Forwarded-Host`` and ``-Port`` unless the
  peer is a trusted proxy (SPEC §12: believed only from ``trusted_proxies``);
plus ``Host`` (the upstream's), the upstream's own credential, and the
``X-Forwarded-*``, ``X-Request-Id`` and ``X-ARouter-*`` headers.

Client response: the upstream's headers minus hop-by-hop ones, plus our
``X-Request-Id``. Framing is h11's job on each side; an upstream answer framed
by both ``Content-Length`` and ``Transfer-Encoding`` loses its length (it was
read chunked, and is relayed chunked).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aroutd.config.parse import IPNetwork, UpstreamConfig
from aroutd.headers import HOP_BY_HOP, OWS, HeaderList, Headers, connection_tokens, first_value
from aroutd.principal import Principal

__all__ = [
    "client_address",
    "peer_is_trusted",
    "request_id_from",
    "response_headers",
    "upstream_request_headers",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CLIENT_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})
_SET_BY_US = frozenset(
    {
        b"host",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"expect",
    }
)
_FROM_TRUSTED_ONLY = frozenset(
    {b"forwarded", b"x-real-ip", b"x-forwarded-host", b"x-forwarded-port"}
)
_RESPONSE_KEEP = frozenset({b"content-length", b"content-type"})
_WS_KEY_PREFIX = b"openai-insecure-api-key."
_REQUEST_ID_RE = re.compile(rb"[\x21-\x7e]{1,200}")


def _host_header(upstream: UpstreamConfig) -> bytes:
    host = upstream.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal (RFC 3986 §3.2.2)
    default_port = 443 if upstream.scheme == "https" else 80
    if upstream.port != default_port:
        host = f"{host}:{upstream.port}"
    return host.encode("ascii")


def _without_ws_key(value: bytes) -> bytes:
    entries = [e.strip(OWS) for e in value.split(b",")]
    return b", ".join(e for e in entries if e and not e.lower().startswith(_WS_KEY_PREFIX))


def upstream_request_headers(
    client_headers: Headers,
    *,
    upstream: UpstreamConfig,
    principal: Principal,
    client_addr: str,
    peer_trusted: bool,
    proto: str,
    request_id: str,
    content_length: int | None,
    peer_addr: str | None = None,
    websocket: bool = False,
) -> HeaderList:
    """The header list of the upstream request (SPEC §6).

    ``content_length`` None: no Content-Length; a client body sent chunked is then
    sent on chunked (``Transfer-Encoding: chunked`` is added). ``peer_addr``: the
    address appended to a trusted incoming X-Forwarded-For (default
    ``client_addr``). ``websocket``: keep the upgrade (``Connection: Upgrade``,
    ``Upgrade: websocket``).
    """
    drop = HOP_BY_HOP | connection_tokens(client_headers) | _CLIENT_CREDENTIALS | _SET_BY_US
    drop |= {upstream.auth_header.lower().encode("ascii")}
    if not peer_trusted:
        drop |= _FROM_TRUSTED_ONLY
    out: HeaderList = [(b"host", _host_header(upstream))]
    incoming_xff: list[bytes] = []
    chunked_body = False
    for name, value in client_headers:
        lname = name.lower()
        if lname == b"x-forwarded-for":
            incoming_xff.append(value.strip(OWS))
        elif lname == b"transfer-encoding":
            chunked_body = True
        if lname in drop or lname.startswith(b"x-arouter-"):
            continue
        if lname == b"sec-websocket-protocol":
            value = _without_ws_key(value)
            if not value:
                continue
        out.append((name, value))
    if websocket:
        out += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
    if content_length is not None:
        out.append((b"content-length", str(content_length).encode("ascii")))
    elif chunked_body and not websocket:
        out.append((b"transfer-encoding", b"chunked"))
    if upstream.auth_value:
        out.append((upstream.auth_header.lower().encode("ascii"), upstream.auth_value.encode()))
    xff = client_addr.encode("ascii")
    if peer_trusted and incoming_xff:
        # RFC 9110 §5.3: several field lines are one comma-separated list.
        appended = (peer_addr or client_addr).encode("ascii")
        xff = b", ".join([*incoming_xff, appended])
    out.append((b"x-forwarded-for", xff))
    out.append((b"x-forwarded-proto", proto.encode("ascii")))
    out.append((b"x-request-id", request_id.encode("ascii")))
    out.append((b"x-arouter-tenant", principal.tenant.encode()))
    if principal.key_id is not None:
        out.append((b"x-arouter-key-id", principal.key_id.encode()))
    elif principal.wallet is not None:
        out.append((b"x-arouter-wallet", principal.wallet.encode()))
    return out


def response_headers(
    upstream_headers: Headers, *, request_id: str, websocket: bool = False
) -> HeaderList:
    """The header list relayed to the client, with our ``X-Request-Id`` (SPEC §6).

    ``websocket``: for a 101 answer, keep ``Connection: Upgrade``, ``Upgrade: websocket``.
    """
    drop = (HOP_BY_HOP | connection_tokens(upstream_headers) | {b"x-request-id"}) - _RESPONSE_KEEP
    if first_value(upstream_headers, b"transfer-encoding") is not None:
        # Framed by both: the body is read chunked (RFC 9112 §6.3), so the length is
        # not the body's and must not reach the client (SPEC §6).
        drop |= {b"content-length"}
    out = [(name, value) for name, value in upstream_headers if name.lower() not in drop]
    if websocket:
        out += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
    out.append((b"x-request-id", request_id.encode("ascii")))
    return out


def request_id_from(headers: Headers) -> str | None:
    """The client's X-Request-Id when it is 1-200 visible ASCII characters, else None."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            if _REQUEST_ID_RE.fullmatch(value):
                return value.decode("ascii")
            return None
    return None


def _parse_ip(text: str) -> IPAddress | None:
    """An address from an X-Forwarded-For entry: 1.2.3.4, 1.2.3.4:5, [::1]:5 or ::1."""
    text = text.strip(" \t")
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return ip


def _is_trusted(ip: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(ip in net for net in trusted)


def peer_is_trusted(peer_ip: str, trusted: Iterable[IPNetwork]) -> bool:
    """Whether the TCP peer is one of ``trusted_proxies`` (SPEC §12)."""
    ip = _parse_ip(peer_ip)
    return ip is not None and _is_trusted(ip, trusted)


def client_address(
    peer_ip: str, headers: Headers, trusted: tuple[IPNetwork, ...]
) -> tuple[str, bool]:
    """(the client address to log, limit and forward; whether the peer is a trusted proxy).

    From a trusted peer, X-Forwarded-For is read right to left and the first
    address that is not itself trusted is the client (SPEC §12). An entry that is
    not an address stops the walk at the last trusted hop: a trusted proxy always
    appends a real address, so anything else was written by the client.
    """
    peer = _parse_ip(peer_ip)
    if peer is None:
        return peer_ip, False  # not an IP socket; nothing to believe
    if not _is_trusted(peer, trusted):
        return str(peer), False
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            text = value.decode("ascii", "replace")
            entries += [e for e in (e.strip(" \t") for e in text.split(",")) if e]
    hop = peer
    for entry in reversed(entries):
        ip = _parse_ip(entry)
        if ip is None:
            break
        hop = ip
        if not _is_trusted(ip, trusted):
            break
    return str(hop), True
