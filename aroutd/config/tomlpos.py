"""Reading TOML with "file:line" problems: errors, typed tables, one error list per file.

:func:`load_toml` is ``tomllib.loads`` with its errors as "FILE:LINE: message".
:class:`Problems` collects every problem as "FILE:LINE: message" and raises
them all at once as :class:`~aroutd.errors.ConfigError`; the lines come from
:mod:`aroutd.config.tomlscan`, scanned only once something is wrong. :class:`Table`
reads typed values out of one TOML table, reports wrong types, and reports every
key it was never asked for as unknown. Messages name keys and types, never a
string value: values may be secrets (SPEC §12). The ``${...}`` expansion
(:mod:`aroutd.config.expand`) and the scanner's names are importable from here too.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any, cast

from aroutd.config.expand import absolute, expand_values
from aroutd.config.tomlscan import KeyPath, Positions, dotted, scan_positions
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

_ERROR_AT_RE = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)


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

    def __len__(self) -> int:
        return len(self._items)

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
