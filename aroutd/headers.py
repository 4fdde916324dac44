"""Header lists as h11 gives them, and the header names and values aroutd treats specially.

A header list is a sequence of ``(name, value)`` byte pairs in wire order;
names are compared lowercased (RFC 9110 §5.1), values with optional white
space trimmed (§5.6.3). Every module reads headers through these helpers, so
"which Content-Length counts" or "what Connection lists" has one answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

__all__ = [
    "CONNECTION_CLOSE",
    "HOP_BY_HOP",
    "JSON_CONTENT_TYPE",
    "OWS",
    "HeaderList",
    "Headers",
    "comma_values",
    "connection_tokens",
    "first_value",
    "reason_phrase",
    "values_of",
]

Headers = Sequence[tuple[bytes, bytes]]  # read-only view
HeaderList = list[tuple[bytes, bytes]]  # one being built

OWS = b" \t"  # RFC 9110 §5.6.3
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
CONNECTION_CLOSE = (b"connection", b"close")

# RFC 9110 §7.6.1 (plus the de-facto Proxy-Connection and Keep-Alive) and the
# proxy authentication pair, which is meant for this hop only (RFC 9110 §11.7).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)


def values_of(headers: Headers, name: bytes) -> list[bytes]:
    """Every value of the (lowercase) ``name``, in order."""
    return [v for n, v in headers if n.lower() == name]


def first_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of the (lowercase) ``name``, or None."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def comma_values(headers: Headers, name: bytes) -> list[bytes]:
    """The members of every ``name`` line's comma list (RFC 9110 §5.6.1), trimmed; empty
    members dropped."""
    out: list[bytes] = []
    for n, value in headers:  # one pass: this runs on every request's head, both ways
        if n.lower() == name:
            out += [m for m in (m.strip(OWS) for m in value.split(b",")) if m]
    return out


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """The lowercase header names listed in ``Connection`` (RFC 9110 §7.6.1)."""
    return frozenset(t.lower() for t in comma_values(headers, b"connection"))


_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    """The status line's reason phrase (RFC 9110 §15); ``b""`` for a status it has none for."""
    return _PHRASES.get(status, b"")
