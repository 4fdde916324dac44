"""The request target, normalized once before anything reads it (SPEC §6, RFC 3986 §6.2.2).

Every later step (built-in endpoints, routes, the Gemini path model, the
forwarded path) sees the one normalized path, so no two spellings of a
resource are treated differently and nothing reaches an upstream that the
policy did not see:

- only origin-form (``/path?query``, RFC 9112 §3.2.1) of printable ASCII;
- percent-encoded unreserved characters (``A-Z a-z 0-9 - . _ ~``,
  RFC 3986 §2.3) are decoded and every other percent-encoding is written in
  upper case (§6.2.2.1-2);
- what is left may not hold a dot segment (``.`` or ``..``), an encoded ``/``
  or backslash, a backslash, an encoded control character or a malformed
  percent-encoding: such a path is 400 ``invalid request path``. Rejecting dot
  segments, rather than resolving them, keeps ``/v1/../x`` from escaping a
  route prefix or an upstream's base path (RFC 3986 §5.2.4 would resolve them).

The query is kept as sent (it is not part of the path the policy matches);
only ``key`` is removed from it later (credentials.strip_query_key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aroutd.errors import BadRequest

__all__ = ["MSG_INVALID_PATH", "Target", "normalize_target"]

MSG_INVALID_PATH = "invalid request path"

# Printable ASCII other than space; '#' never belongs in a request target (RFC 9112 §3.2).
_VISIBLE_RE = re.compile(rb"[!-\"$-~]*")
_PCT_RE = re.compile(rb"%(..?)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Never allowed in a normalized path, encoded or not: '/' hidden in a segment,
# backslash (some servers read it as '/'), and control characters (C0, DEL).
_FORBIDDEN_ENCODED = frozenset([0x2F, 0x5C, 0x7F, *range(0x20)])


@dataclass(frozen=True, slots=True)
class Target:
    """A request target split and normalized: ``path`` for every rule, ``query`` as sent."""

    path: str
    query: bytes


def normalize_target(target: bytes) -> Target:
    """The normalized path and the query of an origin-form target; BadRequest otherwise."""
    raw_path, _, query = target.partition(b"?")
    if not raw_path.startswith(b"/") or not _VISIBLE_RE.fullmatch(target):
        raise BadRequest(MSG_INVALID_PATH)
    if b"\\" in raw_path:
        raise BadRequest(MSG_INVALID_PATH)
    path = _PCT_RE.sub(_decode_unreserved, raw_path) if b"%" in raw_path else raw_path
    if b"/." in path:  # a dot segment starts right after a slash (the path starts with one)
        for segment in path.split(b"/"):
            if segment in (b".", b".."):
                raise BadRequest(MSG_INVALID_PATH)
    return Target(path=path.decode("ascii"), query=query)


def _decode_unreserved(m: re.Match[bytes]) -> bytes:
    digits = m.group(1)
    if digits is None or len(digits) != 2 or not _HEX.issuperset(digits):
        raise BadRequest(MSG_INVALID_PATH)
    byte = int(digits, 16)
    if byte in _UNRESERVED:
        return bytes([byte])
    if byte in _FORBIDDEN_ENCODED:
        raise BadRequest(MSG_INVALID_PATH)
    return b"%" + digits.upper()
