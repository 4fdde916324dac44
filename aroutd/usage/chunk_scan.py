"""Reading a held event's data as it grows: when can it no longer be the usage-only chunk?

For :class:`aroutd.usage.include_usage.UsageChunkFilter`, which releases a held event
as soon as this scan says it cannot be dropped.
"""

from __future__ import annotations

import re

__all__ = ["ChunkScan"]

_STRING_STOP_RE = re.compile(rb'["\\]')
_QUOTE, _BACKSLASH = 0x22, 0x5C
_JSON_WS = frozenset(b" \t\n\r")


class ChunkScan:
    """Reads a growing prefix of an event's data; True once it cannot be a usage-only chunk.

    Sound, never complete: it says True only when no continuation could make the data
    pass the filter's test of a usage-only chunk (``_usage_of`` there): the data does
    not start with ``{``, or the first top-level ``"choices"`` key (spelt without
    escapes) holds anything but an empty array (a second ``choices`` would be a
    duplicate key, which that test refuses), or the JSON it reads is broken there. So
    releasing an event early changes nothing but when its bytes go out.
    """

    __slots__ = ("choices", "depth", "done", "escape", "expect_key", "fed", "in_string", "key")

    def __init__(self) -> None:
        self.fed = 0  # bytes of the data read so far
        self.depth = -1  # -1: before the top-level "{"
        self.done = False  # the top-level object closed: nothing more to learn
        self.in_string = False
        self.escape = False
        self.key: bytearray | None = None  # a top-level key being read
        self.expect_key = False
        self.choices = 0  # after a top-level "choices" key: 1 ':' next, 2 '[' next, 3 ']' next

    def feed(self, data: bytes | bytearray) -> bool:
        self.fed += len(data)
        i, n = 0, len(data)
        while i < n and not self.done:
            b = data[i]
            i += 1
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif b == _QUOTE:
                    self.in_string = False
                    if self.key is not None:
                        self.choices = 1 if self.key == b"choices" else 0
                        self.key = None
                    continue
                elif b == _BACKSLASH:
                    self.escape = True
                elif self.key is None:  # a string not a top-level key: skip to its end
                    stop = _STRING_STOP_RE.search(data, i - 1)
                    i = n if stop is None else stop.start()
                    continue
                if self.key is not None and len(self.key) <= len(b"choices"):
                    self.key.append(b)
                continue
            if b in _JSON_WS:
                continue
            if self.depth < 0:
                if b != ord("{"):
                    return True
                self.depth, self.expect_key = 1, True
            elif self.choices:
                wanted = b":[]"[self.choices - 1]
                if b != wanted:
                    return True
                self.choices = (self.choices + 1) % 4
            elif b == _QUOTE:
                self.in_string = True
                if self.depth == 1 and self.expect_key:
                    self.key, self.expect_key = bytearray(), False
            elif b in b"{[":
                self.depth += 1
            elif b in b"}]":
                self.depth -= 1
                self.done = self.depth == 0
            elif b == ord(",") and self.depth == 1:
                self.expect_key = True
        return False
