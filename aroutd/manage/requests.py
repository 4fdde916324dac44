"""The management API's requests, checked (SPEC §7): bodies of create and patch, the
list query, and which key a path names.

Every problem is a 400 that names the field. A body is one JSON object whose fields
are each given once (two values for one field are a 400, as parsers disagree on which
wins); NaN and Infinity are not JSON; nesting and size attacks end in the same 400.
The checked values come back as a dict holding only the fields the client sent, with
``None`` for an explicit ``null`` (which clears a limit).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aroutd.errors import BadRequest
from aroutd.keytable.table import RATE_FIELDS

__all__ = [
    "CREATE_FIELDS",
    "PATCH_FIELDS",
    "ListQuery",
    "key_hash",
    "parse_body",
    "parse_list_query",
]

MAX_NAME = 200  # characters
MAX_ITEMS = 100  # entries of allowed_providers / allowed_models
MAX_ITEM = 200  # characters of one entry
MAX_COUNT = 10**12  # rate limits: far above any use, and inside sqlite's 64-bit integers
MAX_PAGE = 500
MSG_BODY = "request body must be a JSON object"

_COMMON = frozenset(
    {"name", "limit", "limit_reset", "allowed_providers", "allowed_models", *RATE_FIELDS}
)
CREATE_FIELDS = _COMMON | {"expires_at"}
PATCH_FIELDS = _COMMON | {"disabled"}
_RESETS = ("daily", "weekly", "monthly")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
# RFC 3339 §5.6 date-time; fromisoformat then checks the calendar
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def key_hash(text: str) -> bytes | None:
    """The digest a ``/api/v1/keys/{hash}`` path names; None for anything but 64 hex
    digits (any case), which is answered like an unknown hash."""
    lowered = text.lower()
    return bytes.fromhex(lowered) if _HASH_RE.fullmatch(lowered) else None


def parse_body(
    body: bytes, *, allowed: frozenset[str], now: datetime, create: bool = False
) -> dict[str, Any]:
    """The checked fields of a create (``CREATE_FIELDS``, ``name`` required) or patch
    (``PATCH_FIELDS``) body."""
    data = _json_object(body)
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in allowed:
            raise _quoted(name, "unknown field")
        out[name] = _field(name, value, now)
    if create and "name" not in out:
        raise _bad("name", "missing (required)")
    return out


def _shown(name: str) -> str:
    """A client's field name, fit to quote back: printable and short."""
    clean = "".join(c if c.isprintable() else "?" for c in name[:64])
    return clean + ("…" if len(name) > 64 else "")


def _json_object(body: bytes) -> dict[str, object]:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, value in items:
            if name in out:
                raise _quoted(name, "given twice")
            out[name] = value
        return out

    def no_constant(name: str) -> object:
        raise ValueError(name)  # NaN, Infinity: not JSON (RFC 8259 §6)

    try:
        data = json.loads(body, object_pairs_hook=pairs, parse_constant=no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, int digits
        raise BadRequest(MSG_BODY) from None
    if not isinstance(data, dict):
        raise BadRequest(MSG_BODY)
    return data


def _field(name: str, value: object, now: datetime) -> Any:
    if name == "name":
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
            raise _bad("name", "must be a string of 1 to 200 characters")
        return value
    if name == "disabled":
        if not isinstance(value, bool):
            raise _bad("disabled", "must be true or false")
        return value
    if name in ("allowed_providers", "allowed_models"):
        if not _names(value):
            raise _bad(name, "must be an array of at most 100 strings of 1 to 200 characters")
        assert isinstance(value, list)
        return tuple(dict.fromkeys(value))  # in order, each once
    if value is None:
        return None  # null clears a limit, a reset or an expiry
    if name == "limit":
        if not _amount(value):
            raise _bad("limit", "must be a number >= 0 or null")
        assert isinstance(value, int | float)
        return float(value)
    if name == "limit_reset":
        if value not in _RESETS:
            raise _bad("limit_reset", 'must be "daily", "weekly", "monthly" or null')
        return value
    if name == "expires_at":
        return _expiry(value, now)
    if type(value) is not int or not 1 <= value <= MAX_COUNT:
        raise _bad(name, "must be a positive integer or null")
    return value


def _names(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_ITEMS
        and all(isinstance(v, str) and 1 <= len(v) <= MAX_ITEM for v in value)
    )


def _amount(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:  # an integer beyond float range
        return False


def _expiry(value: object, now: datetime) -> datetime:
    moment = None
    if isinstance(value, str) and _RFC3339_RE.fullmatch(value):
        text = value.upper().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text).astimezone(UTC)
        except ValueError:  # February 30th and friends
            moment = None
    if moment is None:
        raise _bad("expires_at", "must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z")
    if moment <= now:
        raise _bad("expires_at", "must be in the future")
    return moment


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    offset: int = 0
    page_size: int = 100
    include_disabled: bool = False


def parse_list_query(query: bytes) -> ListQuery:
    """``offset``, ``page_size`` (1 to 500) and ``include_disabled`` of a list request;
    other parameters (the SDKs' ``page_token``) are ignored."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in ("offset", "page_size", "include_disabled"):
            if name in values and values[name] != value:
                raise _quoted(name, "given twice")
            values[name] = value
    offset = _integer(values.get("offset", "0"), 0, 10**9)
    if offset is None:
        raise _bad("offset", "must be an integer >= 0")
    size = _integer(values.get("page_size", "100"), 1, MAX_PAGE)
    if size is None:
        raise _bad("page_size", "must be an integer from 1 to 500")
    flag = values.get("include_disabled", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise _bad("include_disabled", "must be true or false")
    return ListQuery(offset=offset, page_size=size, include_disabled=flag in ("true", "1"))


def _integer(text: str, low: int, high: int) -> int | None:
    """ASCII digits from ``low`` to ``high``; None otherwise."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not low <= int(text) <= high:
        return None
    return int(text)


def _quoted(name: str, why: str) -> BadRequest:
    """A 400 quoting a field name the client chose."""
    return BadRequest(f"{_shown(name)}: {why}")


def _bad(name: str, why: str) -> BadRequest:
    return BadRequest(f"{name}: {why}")
