"""Request framing checks against request smuggling (SPEC §12), run on every request head.

h11 reads a body framed by both Content-Length and Transfer-Encoding as chunked
(RFC 9112 §6.3), but a front proxy may have framed it by length: the two then
disagree on where the next request starts. So aroutd refuses, and closes:

- ``Content-Length`` together with ``Transfer-Encoding``: 400;
- ``Content-Length`` values that differ (several lines, or a comma list) or are
  not 1*DIGIT: 400 (RFC 9110 §8.6);
- any transfer coding other than a single ``chunked``: 501 (RFC 9112 §6.1);
- a head larger than ``max_header_bytes``: 431, also when it arrived in one read.

Every error carries ``close=True``: after a framing error the connection's byte
stream cannot be trusted.
"""

from __future__ import annotations

import re

from aroutd.errors import BadRequest, HeaderTooLarge, NotImplementedCoding
from aroutd.headers import OWS, Headers

__all__ = ["check_header_bytes", "check_request_framing"]

MSG_FRAMING = "invalid request framing"
MSG_CODING = "unsupported transfer coding"
MSG_HEADER_TOO_LARGE = "request header too large"

_DIGITS_RE = re.compile(rb"[0-9]{1,20}")  # h11 refuses more than 20 digits too


def check_request_framing(headers: Headers) -> None:
    """Raise BadRequest (400) or NotImplementedCoding (501), both closing, on bad framing."""
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            lengths.update(v.strip(OWS) for v in value.split(b","))
        elif lname == b"transfer-encoding":
            codings.append(value.strip(OWS).lower())
    if lengths and codings:
        raise BadRequest(MSG_FRAMING, close=True)
    if lengths and (len(lengths) != 1 or not _DIGITS_RE.fullmatch(next(iter(lengths)))):
        raise BadRequest(MSG_FRAMING, close=True)
    # Transfer-coding names are case-insensitive (RFC 9112 §7); only one line holding
    # exactly "chunked" is understood, as h11 understands it.
    if codings and codings != [b"chunked"]:
        raise NotImplementedCoding(MSG_CODING, close=True)


def check_header_bytes(total_head_bytes: int, limit: int) -> None:
    """Raise HeaderTooLarge (431, closing) when the request head exceeds ``limit`` bytes."""
    if total_head_bytes > limit:
        raise HeaderTooLarge(MSG_HEADER_TOO_LARGE, close=True)
