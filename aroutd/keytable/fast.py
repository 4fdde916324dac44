"""The key table's fast path (SPEC §3): ``[[keys]]`` tables read without ``tomllib``.

A table may hold a million keys and is re-parsed on SIGHUP while serving, so
the common layout has a fast path. :func:`head` reads only the text before the
first ``[[keys]]`` header (the tenants) with ``tomllib``; :func:`fast_entries`
reads each ``[[keys]]`` table after it with one regex when it is up to four
``name = "plain string"`` lines, else line by line (other one-line values
through ``tomllib`` one at a time). Anything else after the first header
(tenants after keys, multi-line values, dotted or quoted keys, a name given
twice) raises :class:`NotSimple`, and :mod:`aroutd.keytable.table` sends the whole
file to ``tomllib``, which reads the same values, about four times slower.
:class:`Layout` gives the line of a table or field for problems on both paths,
counted only when there is a problem to report. Pure: text in, values out.
"""

from __future__ import annotations

import re
import tomllib
from array import array
from collections.abc import Iterator
from datetime import datetime
from typing import Any

__all__ = ["Layout", "NotSimple", "fast_entries", "head"]

# The fast path's grammar (TOML 1.0 §Comment, §Keys, §String): a comment has no control
# characters but tab; a plain basic string has no escapes, quotes or control characters.
_COMMENT = r"(?:#[^\x00-\x08\n-\x1f\x7f]*)?"
_HEADER = r"[ \t]*\[\[[ \t]*keys[ \t]*\]\][ \t]*" + _COMMENT
_PAIR = r"[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*"
_PLAIN = r'[^"\\\x00-\x08\n-\x1f\x7f]*'
_HEADER_RE = re.compile("^" + _HEADER + "$", re.M)
# Every line of one table, one match each: (header, "", "", "", "") or (name, plain string,
# "", "") or (name, "", other value for tomllib, "") or a blank or comment line (all "") or
# (..., anything else), which sends the whole file to tomllib.
_LINE_RE = re.compile(
    rf'(?:({_HEADER})|{_PAIR}(?:"({_PLAIN})"[ \t]*{_COMMENT}|([^ \t\n][^\n]*))'
    rf"|[ \t]*{_COMMENT}|(.+))(?:\n|\Z)"
)
# The common table in one match: up to four `name = "plain string"` lines right after the
# header, then blank or comment lines up to the next header or the end.
_PLAIN_PAIR = rf'{_PAIR}"({_PLAIN})"[ \t]*{_COMMENT}(?:\n|\Z)'
_TABLE_RE = re.compile(
    rf"{_HEADER}(?:\n|\Z)"
    + f"(?:{_PLAIN_PAIR})?+" * 4  # possessive: a failed match must not retry 2**4 ways
    + rf"(?:[ \t]*{_COMMENT}\n)*+(?={_HEADER}(?:\n|\Z)|\Z)"
)

_DECIMAL = r"[+-]?(?:0|[1-9][0-9]*)"
_SCALAR_RE = re.compile(
    rf"(?:(true|false)|({_DECIMAL})|({_DECIMAL}\.[0-9]+)|([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}"
    rf"T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]+)?(?:Z|[+-][0-9]{{2}}:[0-9]{{2}})))"
    rf"[ \t]*{_COMMENT}"
)


class NotSimple(Exception):
    """The fast path met something it does not read; tomllib reads the whole file."""


class Layout:
    """Where the n-th ``[[keys]]`` table starts; counted only when a problem needs a line."""

    def __init__(self, text: str, first: int, lines: array[int] | None = None) -> None:
        self.text = text
        self.first = first  # offset of the first header; -1: offsets unknown, use ``lines``
        self._offsets: array[int] | None = None
        self._lines = lines

    def offsets(self) -> array[int]:
        if self._offsets is None:
            found = _HEADER_RE.finditer(self.text, self.first)
            self._offsets = array("q", (m.start() for m in found))
        return self._offsets

    def line(self, index: int) -> int:
        if self._lines is None:
            self._lines, line, last = array("q"), 1, 0
            for offset in self.offsets():
                line, last = line + self.text.count("\n", last, offset), offset
                self._lines.append(line)
        return self._lines[index]

    def field_line(self, index: int, name: str | None) -> int:
        line = self.line(index)
        if name is None or self.first < 0:
            return line
        offsets = self.offsets()
        start = offsets[index]
        end = offsets[index + 1] if index + 1 < len(offsets) else len(self.text)
        quoted = re.escape(name)
        pattern = rf"""^[ \t]*(?:{quoted}|"{quoted}"|'{quoted}')[ \t]*="""
        m = re.compile(pattern, re.M).search(self.text, start, end)
        return line if m is None else line + self.text.count("\n", start, m.start())


def head(text: str) -> tuple[dict[str, Any], int]:
    """The text before the first ``[[keys]]`` header, parsed, and that header's offset."""
    first = _HEADER_RE.search(text)
    if first is None:
        raise NotSimple
    try:
        root = tomllib.loads(text[: first.start()])
    except (tomllib.TOMLDecodeError, RecursionError):
        raise NotSimple from None
    if "keys" in root:
        raise NotSimple
    return root, first.start()


def fast_entries(text: str, pos: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each ``[[keys]]`` table from ``pos`` (a header) on, with its index."""
    table_match, index = _TABLE_RE.match, 0
    while pos < len(text):
        m = table_match(text, pos)
        if m is not None:
            groups, entry = m.groups(), {}
            for i in range(0, 8, 2):
                name = groups[i]
                if name is None:
                    break
                if name in entry:
                    raise NotSimple  # a name given twice: let tomllib word that error
                entry[name] = groups[i + 1]
            pos = m.end()
        else:
            nxt = _HEADER_RE.search(text, pos + 1)
            end = len(text) if nxt is None else nxt.start()
            entry = _table_lines(text, pos, end)
            pos = end
        yield index, entry
        index += 1


def _table_lines(text: str, start: int, end: int) -> dict[str, Any]:
    """The ``[[keys]]`` table at ``text[start:end]``, line by line."""
    entry: dict[str, Any] = {}
    for header, name, plain, other, bad in _LINE_RE.findall(text, start, end)[1:]:
        if header or bad:
            raise NotSimple
        if name and name in entry:
            raise NotSimple
        if name:
            entry[name] = _one_value(other) if other else plain
    return entry


def _one_value(text: str) -> object:
    """A one-line TOML value (and comment) other than a plain string, as tomllib reads it."""
    m = _SCALAR_RE.fullmatch(text)
    if m is not None:  # the common scalars without a tomllib call (each costs ~10 µs)
        boolean, integer, number, moment = m.groups()
        if boolean or integer or number:
            return boolean == "true" if boolean else int(integer) if integer else float(number)
        try:
            return datetime.fromisoformat(moment)
        except ValueError:
            pass  # e.g. February 30th: tomllib words the error
    try:
        return tomllib.loads("v = " + text)["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        raise NotSimple from None
