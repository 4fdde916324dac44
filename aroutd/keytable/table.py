"""The key table (SPEC §3): tenants and keys, indexed by the SHA-256 of the key.

:func:`parse_keytable` turns the text of ``keys.toml`` into a :class:`KeyTable`,
or rejects the whole file with :class:`~aroutd.errors.ConfigError` listing every
problem as "FILE:LINE: key 'ID': message" (unknown fields, duplicate ids or
hashes, unknown tenants, bad values).

A table may hold a million keys and is re-parsed on SIGHUP while serving, so
the common layout is read by the fast path in :mod:`aroutd.keytable.fast`;
anything it does not read sends the whole file to ``tomllib``, which reads the
same values. Both end in the same checks here. Line numbers are counted only
when there is a problem to report, and ``KeyEntry`` objects are built when
looked up (``by_digest`` is a read-only mapping over compact rows).
"""

from __future__ import annotations

import hmac
import re
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aroutd.config.tomlpos import Problems, Table, load_toml, type_name
from aroutd.config.tomlscan import scan_positions
from aroutd.keytable.fast import Layout, fast_entries, head
from aroutd.keytable.fast import NotSimple as _NotSimple

__all__ = [
    "ID_RE",
    "LIMIT_FIELDS",
    "RATE_FIELDS",
    "KeyEntry",
    "KeyTable",
    "Tenant",
    "parse_keytable",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    id: str
    allowed_providers: tuple[str, ...] = ()  # empty = any
    allowed_models: tuple[str, ...] = ()  # fnmatch globs; empty = any
    limit: float | None = None  # USD per period; None = unlimited
    limit_reset: str | None = None  # "daily" | "weekly" | "monthly"; None = lifetime
    rpm_limit: int | None = None  # requests per minute (SPEC §9); None = none
    rpd_limit: int | None = None  # requests per UTC day
    tpm_limit: int | None = None  # tokens per minute

    def limits(self) -> dict[str, float | int | None]:
        """The spending and rate limits by name, as the management API narrows them."""
        return {name: getattr(self, name) for name in LIMIT_FIELDS}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEntry:
    id: str
    tenant: str
    type: str  # "api" | "management"
    digest: bytes = field(repr=False)  # raw 32-byte SHA-256 of the whole key string
    name: str = ""
    allowed_providers: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    limit: float | None = None
    limit_reset: str | None = None
    expires_at: datetime | None = None  # aware, UTC
    disabled: bool = False
    rpm_limit: int | None = None
    rpd_limit: int | None = None
    tpm_limit: int | None = None
    source: str = "file"  # "file" (key table) | "store" (management API)
    # keys created over the management API (SPEC §7); None for key-table keys
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None  # id of the management key that made it

    def usable(self, now: datetime) -> bool:
        """False for disabled or expired keys (both answer 401 `invalid api key`)."""
        return not self.disabled and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyTable:
    tenants: Mapping[str, Tenant]
    by_digest: Mapping[bytes, KeyEntry]

    def dispose(self) -> None:
        """After a reload swapped this table out: free it piecemeal (from a worker thread).

        The table must not be used afterwards.
        """
        dispose = getattr(self.by_digest, "dispose", None)
        if dispose is not None:
            dispose()

    def api_keys_by_tenant(self) -> dict[str, list[bytes]]:
        """tenant -> the digests of its API keys, in file order. One pass over every
        key (a second for a million): call it from a worker thread."""
        out: dict[str, list[bytes]] = {}
        if isinstance(self.by_digest, _FileKeys):
            for digest, (_, _, tenant, key_type, _) in self.by_digest.rows().items():
                if key_type == "api":
                    out.setdefault(tenant, []).append(digest)
            return out
        for digest, entry in self.by_digest.items():
            if entry.type == "api":
                out.setdefault(entry.tenant, []).append(digest)
        return out

    def lookup(self, digest: bytes) -> KeyEntry | None:
        """The entry whose digest equals ``digest``, compared in constant time (SPEC §4)."""
        entry = self.by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry


# -- the parser ---------------------------------------------------------------------------

# Key and tenant ids go into logs, metrics labels and X-ARouter-* headers.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_RESETS = ("daily", "weekly", "monthly")
RATE_FIELDS = ("rpm_limit", "rpd_limit", "tpm_limit")
LIMIT_FIELDS = ("limit", *RATE_FIELDS)
_KEY_TYPES = {"api": "api", "management": "management"}  # one shared str per type
_BASIC_FIELDS = frozenset(("id", "tenant", "type", "sha256"))
_EXPECTED = {
    "name": "a string",
    "allowed_providers": "an array of strings",
    "allowed_models": "an array of strings",
    "limit": "a number >= 0 (USD)",
    "limit_reset": '"daily", "weekly" or "monthly"',
    "expires_at": "a TOML date-time such as 2027-01-01T00:00:00Z",
    "disabled": "true or false",
    "rpm_limit": "a positive integer",
    "rpd_limit": "a positive integer",
    "tpm_limit": "a positive integer",
}
_KEY_FIELDS = _BASIC_FIELDS | _EXPECTED.keys()


_Row = tuple[bytes, str, str, str, dict[str, Any] | None]  # digest, id, tenant, type, rest
_Problem = tuple[str | None, str]  # (field, or None for the header line; message)


_DISPOSE_BATCH = 512


class _FileKeys(Mapping[bytes, KeyEntry]):
    """digest -> KeyEntry, each built when looked up: a million KeyEntry objects built
    up front would cost seconds per reload; a lookup costs microseconds."""

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[bytes, _Row]) -> None:
        self._rows = rows

    def __getitem__(self, digest: bytes) -> KeyEntry:
        d, kid, tenant, key_type, rest = self._rows[digest]
        return KeyEntry(id=kid, tenant=tenant, type=key_type, digest=d, **(rest or {}))

    def __contains__(self, digest: object) -> bool:
        return digest in self._rows

    def rows(self) -> Mapping[bytes, _Row]:
        return self._rows

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<{len(self._rows)} key table entries>"

    def dispose(self) -> None:
        """Empty the rows a few at a time, so a thread doing it yields the GIL between
        batches: freeing a million rows in one go would hold it for a quarter second."""
        rows = self._rows
        while rows:
            for _ in range(min(_DISPOSE_BATCH, len(rows))):
                rows.popitem()


def parse_keytable(text: str, *, path: Path) -> KeyTable:
    """The :class:`KeyTable` in ``text``; ``path`` names the file in messages."""
    if "\r\n" in text:  # CRLF files: the fast path reads LF lines
        text = text.replace("\r\n", "\n")
    try:
        return _fast(text, str(path))
    except _NotSimple:
        return _slow(text, str(path))


def _fast(text: str, file: str) -> KeyTable:
    root, first = head(text)
    prefix = text[:first]
    problems = Problems(file, lambda: scan_positions(prefix))
    return _build(root, fast_entries(text, first), Layout(text, first), problems)


def _slow(text: str, file: str) -> KeyTable:
    data = load_toml(text, file)
    keys = data.pop("keys", [])
    problems = Problems(file, lambda: scan_positions(text))
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        problems.add(("keys",), "keys: must be an array of tables ([[keys]])")
        keys = []
    layout = Layout(text, 0)
    if len(layout.offsets()) != len(keys):  # headers the regex cannot see: ask the scanner
        lines = array("q", (problems.line(("keys", i)) for i in range(len(keys))))
        layout = Layout(text, -1, lines)
    return _build(data, enumerate(keys), layout, problems)


def _build(
    root: dict[str, Any],
    entries: Iterator[tuple[int, dict[str, Any]]],
    layout: Layout,
    problems: Problems,
) -> KeyTable:
    top = Table(problems, (), root, unknown="unknown field")
    tenants = _tenants(top.table("tenants"))
    top.finish()
    rows: dict[bytes, _Row] = {}
    first_index: dict[str, int] = {}  # id -> index of its first table
    for index, raw in entries:
        row = _row(raw, tenants)
        if (
            row is not None
            and first_index.setdefault(row[1], index) == index
            and rows.setdefault(row[0], row) is row
        ):
            continue  # the common case ends here
        _report(index, raw, row, tenants, rows, first_index, layout, problems)
    problems.raise_if_any()
    return KeyTable(tenants=tenants, by_digest=_FileKeys(rows))


def _row(d: dict[str, Any], tenants: Mapping[str, Tenant]) -> _Row | None:
    """A valid table as a row; None when anything in it needs a closer look."""
    kid, tid, sha, kt = d.get("id"), d.get("tenant"), d.get("sha256"), d.get("type", "api")
    if type(kid) is not str or type(tid) is not str or type(sha) is not str or type(kt) is not str:
        return None
    tenant, key_type = tenants.get(tid), _KEY_TYPES.get(kt)
    if tenant is None or key_type is None or not ID_RE.fullmatch(kid):
        return None
    if not _SHA256_RE.fullmatch(sha):
        return None
    rest = None
    if not d.keys() <= _BASIC_FIELDS:
        errors: list[_Problem] = []
        rest = _optional(d, errors)
        if errors:
            return None
    return bytes.fromhex(sha), kid, tenant.id, key_type, rest


def _report(
    index: int,
    d: dict[str, Any],
    row: _Row | None,
    tenants: Mapping[str, Tenant],
    rows: Mapping[bytes, _Row],
    first_index: dict[str, int],
    layout: Layout,
    problems: Problems,
) -> None:
    kid = d.get("id")
    valid_id = isinstance(kid, str) and ID_RE.fullmatch(kid) is not None
    label = f"key {kid!r}" if valid_id else f"key #{index + 1}"
    errors = _problems(d, tenants) if row is None else []
    if isinstance(kid, str) and first_index.setdefault(kid, index) != index:
        at = layout.field_line(first_index[kid], "id")
        errors.append(("id", f"duplicate id (also at line {at})"))
    elif row is not None and rows[row[0]] is not row:
        other = rows[row[0]][1]
        at = layout.field_line(first_index[other], "sha256")
        errors.append(("sha256", f"duplicate sha256 (same as key {other!r} at line {at})"))
    for name, message in errors:
        problems.add_at(layout.field_line(index, name), f"{label}: {message}")


def _tenants(t: Table) -> dict[str, Tenant]:
    tenants = {}
    for name, value in t.data.items():
        if not isinstance(t.raw(name), dict):
            t.problem(name, f"must be a table ([tenants.NAME]), not {type_name(value)}")
            continue
        sub = Table(t.problems, (*t.path, name), value, label=f"tenant {name!r}: ")
        sub.unknown = "unknown field"
        if not ID_RE.fullmatch(name) or name.startswith("wallet:"):
            t.problems.add(sub.path, f"tenant {name!r}: ids use letters, digits and . _ : @ -")
        limit = sub.number("limit", 0.0, positive=False) if sub.has("limit") else None
        reset = sub.string("limit_reset", "") if sub.has("limit_reset") else None
        if reset is not None and reset not in _RESETS:
            sub.problem("limit_reset", 'must be "daily", "weekly" or "monthly"')
        tenants[name] = Tenant(
            id=name,
            allowed_providers=sub.strings("allowed_providers"),
            allowed_models=sub.strings("allowed_models"),
            limit=limit,
            limit_reset=reset,
            **{name: sub.integer(name, 0) or None for name in RATE_FIELDS if sub.has(name)},
        )
        sub.finish()
    return tenants


def _problems(d: dict[str, Any], tenants: Mapping[str, Tenant]) -> list[_Problem]:
    """Everything wrong with one ``[[keys]]`` table (duplicates aside)."""
    errors: list[_Problem] = []
    kid, tenant, sha, key_type = d.get("id"), d.get("tenant"), d.get("sha256"), d.get("type")
    if not isinstance(kid, str) or not ID_RE.fullmatch(kid):
        errors.append(_bad(d, "id", "letters, digits and . _ : @ - (at most 128)"))
    if isinstance(tenant, str) and tenant not in tenants:
        errors.append(("tenant", f"unknown tenant {tenant!r}"))
    elif not isinstance(tenant, str):
        errors.append(_bad(d, "tenant", "a string"))
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        errors.append(_bad(d, "sha256", "64 lowercase hex characters"))
    if "type" in d and (not isinstance(key_type, str) or key_type not in _KEY_TYPES):
        errors.append(_bad(d, "type", '"api" or "management"'))
    _optional(d, errors)
    return errors


def _bad(d: dict[str, Any], name: str, expected: str) -> _Problem:
    """A missing or wrong required field; a string is never shown (it may be a pasted key)."""
    if name not in d:
        return None, f"{name}: missing (required)"
    value = d[name]
    shown = "" if isinstance(value, str) else f", not {type_name(value)}"
    return name, f"{name}: must be {expected}{shown}"


def _optional(d: dict[str, Any], errors: list[_Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in d.items():
        if name in _BASIC_FIELDS:
            continue
        if name == "name" and isinstance(value, str):
            out[name] = value
        elif name in ("allowed_providers", "allowed_models") and _strings(value):
            out[name] = tuple(value)
        elif name == "limit" and _amount(value):
            out[name] = float(value)
        elif name == "limit_reset" and value in _RESETS:
            out[name] = value
        elif name == "expires_at" and isinstance(value, datetime):
            aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
            out[name] = aware.astimezone(UTC)  # naive means UTC
        elif (name == "disabled" and isinstance(value, bool)) or (
            name in RATE_FIELDS and _count(value)
        ):
            out[name] = value
        elif name not in _KEY_FIELDS:
            errors.append((name, f"{name}: unknown field"))
        else:
            errors.append((name, f"{name}: must be {_EXPECTED[name]}, not {_shown(value)}"))
    return out


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _count(value: object) -> bool:
    return type(value) is int and value >= 1


def _amount(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return 0 <= float(value) < float("inf")
    except OverflowError:
        return False


def _shown(value: object) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return "a date without a time"
    if isinstance(value, str):
        return "a string"
    return type_name(value) if not isinstance(value, int | float) else str(value)
