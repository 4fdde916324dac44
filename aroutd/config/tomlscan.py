"""Where each key is in a TOML text: one scan for "file:line" problems.

``tomllib`` gives values but no positions, so :func:`scan_positions` walks the
text once and remembers the line of every table header and every ``key =``
(values are skipped with a small lexer that knows TOML's four string kinds,
arrays, inline tables and comments). A path is a tuple of keys, with an int for
the n-th table of an array of tables: ``("routes", 1, "upstream")``. Paths the
scanner did not see (array elements, inline tables) take the line of their
nearest ancestor. :func:`dotted` writes a path back as a TOML key for messages.
Pure: text in, values out; the scanner never raises.
"""

from __future__ import annotations

import re

__all__ = ["KeyPath", "Positions", "dotted", "scan_positions"]

KeyPath = tuple[str | int, ...]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STR_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_LITERAL_STR_RE = re.compile(r"'([^'\n]*)'")
_ML_BASIC_END_RE = re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.S)
_VALUE_STOP_RE = re.compile(r"""["'\[\]{}#\n]""")
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class Positions:
    """Line numbers of table headers and keys, looked up by path."""

    __slots__ = ("_explicit", "_implicit")

    def __init__(self, explicit: dict[KeyPath, int], implicit: dict[KeyPath, int]) -> None:
        self._explicit = explicit
        self._implicit = implicit

    def line(self, path: KeyPath) -> int:
        """The line where ``path`` (or its nearest known ancestor) is defined; 1 if none."""
        for k in range(len(path), 0, -1):
            hit = self._explicit.get(path[:k]) or self._implicit.get(path[:k])
            if hit:
                return hit
        return 1


def scan_positions(text: str) -> Positions:
    """One pass over TOML ``text`` (meant for text tomllib accepted; never raises)."""
    explicit: dict[KeyPath, int] = {}
    implicit: dict[KeyPath, int] = {}
    aot_last: dict[KeyPath, int] = {}  # array-of-tables path -> index of its last table
    table: KeyPath = ()
    pos, line, n = 0, 1, len(text)

    def record(path: KeyPath) -> None:
        explicit.setdefault(path, line)
        for k in range(1, len(path)):
            implicit.setdefault(path[:k], line)

    while pos < n:
        ch = text[pos]
        if ch in " \t\r":
            pos += 1
        elif ch == "\n":
            line, pos = line + 1, pos + 1
        elif ch == "#":
            pos = _line_end(text, pos)
        elif ch == "[":
            is_aot = text.startswith("[[", pos)
            keys, pos = _read_key(text, pos + (2 if is_aot else 1))
            if keys:
                table = _resolve_table(keys, aot_last, is_aot)
                record(table)
            pos = _line_end(text, pos)
        else:
            keys, after_key = _read_key(text, pos)
            if keys and after_key < n and text[after_key] == "=":
                record(table + tuple(keys))
                end = _skip_value(text, after_key + 1)
            else:
                end = _line_end(text, pos)
            line += text.count("\n", pos, end)
            pos = max(end, pos + 1)
    return Positions(explicit, implicit)


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _read_key(text: str, pos: int) -> tuple[list[str], int]:
    """A dotted key at ``pos``: its parts and the position after it (and after blanks)."""
    parts: list[str] = []
    while True:
        pos = _skip_ws(text, pos)
        m = _BARE_KEY_RE.match(text, pos) or _BASIC_STR_RE.match(text, pos)
        if m is not None and m.group(0).startswith('"'):
            parts.append(_ESCAPE_RE.sub(_unescape, m.group(1)))
        elif m is not None:
            parts.append(m.group(0))
        else:
            m = _LITERAL_STR_RE.match(text, pos)
            if m is None:
                return [], pos
            parts.append(m.group(1))
        pos = _skip_ws(text, m.end())
        if pos >= len(text) or text[pos] != ".":
            return parts, pos
        pos += 1


def _unescape(m: re.Match[str]) -> str:
    esc = m.group(1)
    if esc[0] in "uU":
        code = int(esc[1:], 16)
        return chr(code) if code <= 0x10FFFF else ""
    return _ESCAPES.get(esc, esc)


def _resolve_table(keys: list[str], aot_last: dict[KeyPath, int], is_aot: bool) -> KeyPath:
    """The concrete path of a header: the index of the last table of every array on the way."""
    path: KeyPath = ()
    for i, key in enumerate(keys):
        path = (*path, key)
        if is_aot and i == len(keys) - 1:
            index = aot_last.get(path, -1) + 1
            aot_last[path] = index
            path = (*path, index)
        elif path in aot_last:
            path = (*path, aot_last[path])
    return path


def _skip_value(text: str, pos: int) -> int:
    """The position of the newline that ends the value starting at ``pos``."""
    depth, n = 0, len(text)
    while pos < n:
        m = _VALUE_STOP_RE.search(text, pos)
        if m is None:
            return n
        p, ch = m.start(), m.group(0)
        if ch == "\n":
            if depth == 0:
                return p
            pos = p + 1
        elif ch == "#":
            pos = _line_end(text, p)
        elif ch in "[{":
            depth, pos = depth + 1, p + 1
        elif ch in "]}":
            depth, pos = max(0, depth - 1), p + 1
        else:
            pos = _skip_string(text, p)
    return n


def _skip_string(text: str, pos: int) -> int:
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        if quote == '"':
            m = _ML_BASIC_END_RE.match(text, pos + 3)
            end = len(text) if m is None else m.end()
        else:
            found = text.find("'''", pos + 3)
            end = len(text) if found < 0 else found + 3
        for _ in range(2):  # up to two quotes may sit right before the closing delimiter
            if text.startswith(quote, end):
                end += 1
        return end
    m = (_BASIC_STR_RE if quote == '"' else _LITERAL_STR_RE).match(text, pos)
    return _line_end(text, pos) if m is None else m.end()


def dotted(path: KeyPath) -> str:
    """``("pricing", "openai/gpt-4o", "input")`` -> ``pricing."openai/gpt-4o".input``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY_RE.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out
