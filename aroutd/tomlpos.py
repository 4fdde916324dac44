"""Reading TOML with "file:line" problems: positions, typed tables, ${...} expansion.

``tomllib`` gives values but no positions, so :func:`scan_positions` walks the
text once and remembers the line of every table header and every ``key =``
(values are skipped with a small lexer that knows TOML's four string kinds,
arrays, inline tables and comments). A path is a tuple of keys, with an int for
the n-th table of an array of tables: ``("routes", 1, "upstream")``. Paths the
scanner did not see (array elements, inline tables) take the line of their
nearest ancestor.

:class:`Problems` collects every problem as "FILE:LINE: message" and raises
them all at once as :class:`~aroutd.errors.ConfigError`. :class:`Table` reads
typed values out of one TOML table, reports wrong types, and reports every key
it was never asked for as unknown. Messages name keys and types, never a string
value: values may be secrets (SPEC §12).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, cast

from aroutd.errors import ConfigError

__all__ = [
    "KeyPath",
    "Positions",
    "Problems",
    "Table",
    "absolute",
    "dotted",
    "expand_values",
    "load_toml",
    "scan_positions",
    "type_name",
]

KeyPath = tuple[str | int, ...]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STR_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_LITERAL_STR_RE = re.compile(r"'([^'\n]*)'")
_ML_BASIC_END_RE = re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.S)
_VALUE_STOP_RE = re.compile(r"""["'\[\]{}#\n]""")
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_ERROR_AT_RE = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)
# "$${" | "${file:PATH}" (PATH may use ${VAR}) | "${VAR}" (or anything else in braces: an error)
_REFERENCE_RE = re.compile(
    r"\$\$\{|\$\{file:((?:[^{}]|\$\{[A-Za-z_][A-Za-z0-9_]*\})*)\}|\$\{([^}]*)\}"
)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_toml(text: str, file: str) -> dict[str, Any]:
    """``tomllib.loads`` with its errors as ConfigError("FILE:LINE: message")."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _ERROR_AT_RE.match(str(exc))
        if m is None:
            raise ConfigError([f"{file}:1: invalid TOML: {exc}"]) from None
        msg, line, column = m.groups()
        if line is None:  # "at end of document"
            line, where = str(text.count("\n") + 1), "at end of document"
        else:
            where = f"column {column}"
        raise ConfigError([f"{file}:{line}: invalid TOML: {msg} ({where})"]) from None
    except RecursionError:
        raise ConfigError([f"{file}:1: invalid TOML: values nested too deeply"]) from None


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


_TYPE_NAMES = (
    (bool, "a boolean"),  # before int: a bool is an int
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
    (datetime, "a date-time"),  # before date: a datetime is a date
    (date, "a date"),
    (time, "a time"),
)


def type_name(value: object) -> str:
    """What a TOML value is, for messages that must not show the value itself."""
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), "a value")


class Problems:
    """Every problem found in one file, each kept as "FILE:LINE: message"."""

    def __init__(self, file: str, positions: Callable[[], Positions]) -> None:
        self.file = file
        self._make_positions = positions
        self._positions: Positions | None = None
        self._items: list[tuple[int, str]] = []

    def line(self, path: KeyPath) -> int:
        if self._positions is None:  # scanned only once something is wrong
            self._positions = self._make_positions()
        return self._positions.line(path)

    def add(self, path: KeyPath, message: str) -> None:
        self.add_at(self.line(path), message)

    def add_at(self, line: int, message: str) -> None:
        self._items.append((line, f"{self.file}:{line}: {message}"))

    def raise_if_any(self) -> None:
        if self._items:
            raise ConfigError([text for _, text in sorted(self._items, key=lambda i: i[0])])


class Table:
    """One TOML table being read. Every getter reports a wrong value and returns the default;
    :meth:`finish` reports the keys nobody asked for."""

    def __init__(
        self,
        problems: Problems,
        path: KeyPath,
        data: object,
        *,
        label: str | None = None,
        unknown: str = "unknown key",
    ) -> None:
        self.problems = problems
        self.path = path
        self.label = label if label is not None else (dotted(path) + "." if path else "")
        self.unknown = unknown
        self.data: Mapping[str, object] = data if isinstance(data, dict) else {}
        self._used: set[str] = set()

    def problem(self, key: str, message: str) -> None:
        self.problems.add((*self.path, key), f"{self.label}{key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        self._used.add(key)
        return self.data.get(key)

    def _typed(
        self,
        key: str,
        default: Any,
        ok: Callable[[object], bool],
        expected: str,
        item_ok: Callable[[object], bool] | None = None,
    ) -> Any:
        """``key``'s value when ``ok`` (or, with ``item_ok``, an array of such items)."""
        value = self.raw(key)
        if value is None:
            return default
        if item_ok is not None and isinstance(value, list):
            bad = [item for item in value if not item_ok(item)]
            if not bad:
                return value
            shown = "an array holding " + _shown(bad[0])
        elif item_ok is None and ok(value):
            return value
        else:
            shown = _shown(value)
        self.problem(key, f"must be {expected}, not {shown}")
        return default

    def string(self, key: str, default: str) -> str:
        return cast(str, self._typed(key, default, lambda v: isinstance(v, str), "a string"))

    def boolean(self, key: str, default: bool) -> bool:
        return cast(bool, self._typed(key, default, lambda v: isinstance(v, bool), "true or false"))

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

        def ok(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

        value: int = self._typed(key, default, ok, expected)
        return value

    def number(self, key: str, default: float, *, positive: bool = True) -> float:
        expected = "a positive number" if positive else "a number >= 0"
        value = self._typed(key, default, lambda v: _number_ok(v, positive), expected)
        return float(value)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        is_str: Callable[[object], bool] = lambda v: isinstance(v, str)  # noqa: E731
        return tuple(self._typed(key, default, is_str, "an array of strings", is_str))

    def numbers(self, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        expected = "an array of positive numbers"
        items = self._typed(key, default, bool, expected, lambda v: _number_ok(v, True))
        return tuple(float(x) for x in items)

    def table(self, key: str) -> Table:
        """A sub-table (an empty one when missing or of the wrong type, which is reported)."""
        value = self._typed(key, {}, lambda v: isinstance(v, dict), "a table")
        return Table(self.problems, (*self.path, key), value, unknown=self.unknown)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``)."""

        is_table: Callable[[object], bool] = lambda v: isinstance(v, dict)  # noqa: E731
        items = self._typed(key, [], is_table, "an array of tables", is_table)
        return [Table(self.problems, (*self.path, key, i), t) for i, t in enumerate(items)]

    def finish(self) -> None:
        for key in self.data:
            if key not in self._used:
                self.problem(key, self.unknown)


def _shown(value: object) -> str:
    """A number as it is (never secret), anything else by its type only."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return type_name(value)


def _number_ok(value: object, positive: bool) -> bool:
    """A finite TOML integer or float (as a float), > 0 or >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return False
    if not math.isfinite(number):
        return False
    return number > 0 if positive else number >= 0


def expand_values(
    value: Any, path: KeyPath, problems: Problems, environ: Mapping[str, str], base: Path
) -> Any:
    """Every string in ``value`` with ``${VAR}`` and ``${file:PATH}`` replaced (SPEC §2).

    ``$${`` stands for a literal ``${``. A file's content loses one trailing newline
    (systemd ``LoadCredential=``); its PATH may use ``${VAR}``, as in
    ``${file:${CREDENTIALS_DIRECTORY}/openai}``. Problems name the variable or file,
    never a value.
    """
    if isinstance(value, str):
        return _expand(value, path, problems, environ, base) if "${" in value else value
    if isinstance(value, list):
        return [expand_values(v, (*path, i), problems, environ, base) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_values(v, (*path, k), problems, environ, base) for k, v in value.items()}
    return value


def _expand(
    text: str, path: KeyPath, problems: Problems, environ: Mapping[str, str], base: Path
) -> str:
    def replace(m: re.Match[str]) -> str:
        file_ref, ref = m.group(1), m.group(2)
        if file_ref is not None:
            name = _expand(file_ref, path, problems, environ, base)
            return _read_reference(name, path, problems, base)
        if ref is None:  # "$${"
            return "${"
        if not _ENV_NAME_RE.fullmatch(ref):
            problems.add(
                path, f"{dotted(path)}: not ${{VAR}} or ${{file:PATH}} (write $${{ for ${{)"
            )
            return ""
        found = environ.get(ref)
        if found is None:
            problems.add(path, f"{dotted(path)}: environment variable {ref} is not set")
            return ""
        return found

    return _REFERENCE_RE.sub(replace, text)


def _read_reference(name: str, path: KeyPath, problems: Problems, base: Path) -> str:
    where = f"{dotted(path)}: cannot read ${{file:{name}}}"
    if not name:
        problems.add(path, f"{where}: empty path")
        return ""
    try:
        data = (base / name).read_bytes()
    except OSError as exc:
        problems.add(path, f"{where}: {exc.strerror or 'cannot open'}")
        return ""
    except ValueError:  # e.g. an embedded NUL byte in the name
        problems.add(path, f"{where}: invalid file name")
        return ""
    try:
        content = data.decode()
    except UnicodeDecodeError:
        problems.add(path, f"{where}: not UTF-8 text")
        return ""
    for ending in ("\r\n", "\n"):
        if content.endswith(ending):
            return content[: -len(ending)]
    return content


def absolute(base: Path, name: str) -> Path:
    """``name`` resolved against ``base`` (the config file's folder), normalized."""
    return Path(os.path.normpath(base / name))
