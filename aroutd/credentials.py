"""The one credential a request presents (SPEC §4), and the query without it.

``extract_credential`` looks at every place a client may put its key at once, in
SPEC order: ``Authorization: Bearer``, ``X-Api-Key``, ``X-Goog-Api-Key``, the
``key`` query parameter and, on a WebSocket upgrade, a ``Sec-WebSocket-Protocol``
entry ``openai-insecure-api-key.<key>``. Rules:

- nothing presented: ``None`` (the caller answers 401, or 402 with x402);
- an ``Authorization`` header that is not ``Bearer <token68>``: 401
  ``missing or invalid Authorization header`` (RFC 6750 §2.1), even when another
  source holds a good key: a malformed header is never silently skipped;
- the same value in several places is one credential; two different values are
  401 ``conflicting credentials``;
- an empty ``X-Api-Key``, ``X-Goog-Api-Key``, ``key=`` or subprotocol key counts
  as absent (it names nobody).

Header names arrive lowercase (h11). Values are taken as bytes and decoded as
latin-1, a bijection, so comparisons and the digest are byte-exact; real keys are
ASCII, so ``digest`` is also the SHA-256 of the key string (SPEC §3). The
credential's value never appears in a repr or an exception message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote_to_bytes

from aroutd.errors import Unauthorized
from aroutd.headers import OWS, Headers
from aroutd.principal import AuthMethod

__all__ = [
    "Credential",
    "CredentialKind",
    "credential_kind",
    "extract_credential",
    "redact_query_key",
    "strip_query_key",
]

CredentialKind = Literal["api", "management", "jwt", "unknown"]

MSG_INVALID_AUTH_HEADER = "missing or invalid Authorization header"
MSG_CONFLICTING = "conflicting credentials"

# SPEC §1: the prefix and 48 lowercase hex characters (24 random bytes).
_API_KEY_RE = re.compile(r"lr_live_[0-9a-f]{48}")
_MGMT_KEY_RE = re.compile(r"lr_mgmt_[0-9a-f]{48}")
# RFC 7519 compact serialization: three base64url segments; a JOSE header is a
# JSON object, so its encoding starts with "eyJ" ('{"').
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token.
_BEARER_RE = re.compile(rb"([A-Za-z]+) +([A-Za-z0-9\-._~+/]+=*)")

_WS_KEY_PREFIX = b"openai-insecure-api-key."
_KEY_HEADERS: tuple[tuple[bytes, AuthMethod], ...] = (
    (b"x-api-key", "x-api-key"),
    (b"x-goog-api-key", "x-goog-api-key"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """The credential presented by a request; ``method`` says where (first in SPEC order)."""

    kind: CredentialKind
    value: str = field(repr=False)
    method: AuthMethod
    digest: bytes = field(repr=False)  # SHA-256 of the key's bytes: the key table index


def credential_kind(value: str) -> CredentialKind:
    """Classify a presented token by its shape alone (SPEC §4)."""
    if _API_KEY_RE.fullmatch(value):
        return "api"
    if _MGMT_KEY_RE.fullmatch(value):
        return "management"
    if _JWT_RE.fullmatch(value):
        return "jwt"
    return "unknown"


def _bearer_token(values: list[bytes]) -> bytes | None:
    """The token of the Authorization header(s), or raise when malformed or ambiguous."""
    if not values:
        return None
    tokens = set()
    for raw in values:
        m = _BEARER_RE.fullmatch(raw.strip(OWS))
        # The auth-scheme is case-insensitive (RFC 9110 §11.1).
        if m is None or m.group(1).lower() != b"bearer":
            raise Unauthorized(MSG_INVALID_AUTH_HEADER)
        tokens.add(m.group(2))
    if len(tokens) != 1:
        raise Unauthorized(MSG_INVALID_AUTH_HEADER)
    return tokens.pop()


def _query_params(query: bytes) -> list[tuple[bytes, bytes | None]]:
    """``name=value`` pairs of a query, names and values still encoded (value None: no '=')."""
    out: list[tuple[bytes, bytes | None]] = []
    for part in query.split(b"&"):
        name, eq, value = part.partition(b"=")
        out.append((name, value if eq else None))
    return out


def _form_decode(raw: bytes) -> bytes:
    # application/x-www-form-urlencoded, as urllib.parse.parse_qsl reads it: the
    # upstream would read a query this way, so we must too.
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _is_key_param(name: bytes) -> bool:
    return _form_decode(name) == b"key"


def _query_keys(query: bytes) -> tuple[bool, list[bytes]]:
    """(a ``key`` parameter is present, its non-empty decoded values)."""
    present = False
    values: list[bytes] = []
    if not query:
        return present, values
    for name, value in _query_params(query):
        if _is_key_param(name):
            present = True
            decoded = _form_decode(value or b"")
            if decoded:
                values.append(decoded)
    return present, values


def _subprotocol_keys(values: list[bytes]) -> list[bytes]:
    """Keys in ``Sec-WebSocket-Protocol`` entries (RFC 6455 §11.3.4: a comma list)."""
    out = []
    for raw in values:
        for entry in raw.split(b","):
            entry = entry.strip(OWS)
            if entry.startswith(_WS_KEY_PREFIX) and len(entry) > len(_WS_KEY_PREFIX):
                out.append(entry[len(_WS_KEY_PREFIX) :])
    return out


def extract_credential(
    headers: Headers,
    query: bytes,
    *,
    allow_query_key: bool,
    websocket: bool = False,
) -> Credential | None:
    """The one credential of a request head, None when there is none (SPEC §4).

    Raises :class:`Unauthorized` for a malformed ``Authorization`` header, for
    ``?key=`` when ``allow_query_key`` is false, and for different values in
    different places.
    """
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)

    found: list[tuple[AuthMethod, bytes]] = []
    token = _bearer_token(by_name.get(b"authorization", []))
    if token is not None:
        found.append(("bearer", token))
    for header, header_method in _KEY_HEADERS:
        for value in by_name.get(header, []):
            value = value.strip(OWS)
            if value:
                found.append((header_method, value))
    present, query_values = _query_keys(query)
    if present and not allow_query_key:
        # SPEC §2 allow_query_key = false: such requests get 401.
        raise Unauthorized(MSG_INVALID_AUTH_HEADER)
    found.extend(("query", v) for v in query_values)
    if websocket:
        protocols = by_name.get(b"sec-websocket-protocol", [])
        found.extend(("websocket", v) for v in _subprotocol_keys(protocols))

    if not found:
        return None
    if len({value for _, value in found}) != 1:
        raise Unauthorized(MSG_CONFLICTING)
    method, raw = found[0]
    text = raw.decode("latin-1")
    return Credential(
        kind=credential_kind(text),
        value=text,
        method=method,
        digest=hashlib.sha256(raw).digest(),
    )


def strip_query_key(query: bytes) -> bytes:
    """The query without any ``key`` parameter; the others byte-for-byte, in order (SPEC §6)."""
    if not query:
        return query
    kept = [part for part in query.split(b"&") if not _is_key_param(part.partition(b"=")[0])]
    return b"&".join(kept)


def redact_query_key(target: bytes) -> str:
    """A request target for the access log, every ``key`` value replaced by REDACTED (SPEC §11)."""
    path, sep, query = target.partition(b"?")
    if sep:
        parts = []
        for part in query.split(b"&"):
            name = part.partition(b"=")[0]
            parts.append(name + b"=REDACTED" if _is_key_param(name) else part)
        path = path + b"?" + b"&".join(parts)
    return path.decode("ascii", "backslashreplace")
