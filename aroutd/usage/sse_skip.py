"""The fast path of the SSE readers: whole events that cannot matter, found without reading them.

The usage meter (:mod:`aroutd.usage.parse`) and the usage-chunk filter
(:mod:`aroutd.usage.include_usage`) read an event stream line by line, which costs per
line. Most events cannot matter to them: those whose bytes do not hold a needle
(``usage``; Gemini's meter: ``usageMetadata``, which no LF splits) carry no usage and
are no usage chunk. They need no reading when they can be told apart unread, which they
can in a chunk without CR, where every line ends in LF: at the second LF of any
``\\n\\n`` a blank line ends, whatever was open before (the first LF ends the open line,
or is the LF of a CRLF whose CR ended it), so the reader stands between events there,
nothing open, as at a stream's start once its BOM is behind.

A reader fed such a chunk reads, line by line, the event open at the chunk's head up to
:func:`open_event_end`; from there (or the chunk's start, when nothing was open) the
whole events up to the last ``\\n\\n`` before the first needle are skipped (the meter
ignores their bytes, the filter passes them on as they are), and the rest is read.
"""

from __future__ import annotations

__all__ = ["first_live", "open_event_end"]


def first_live(chunk: bytes, needle: bytes, start: int) -> int:
    """The first ``needle`` at or after ``start`` that may carry usage; -1 when none.

    A needle that is the key of a JSON ``"needle":null`` (or ``": null``) carries none:
    an OpenAI stream that asked for usage says ``"usage":null`` in every content chunk,
    and such an event is neither usage nor the usage-only chunk, so it is skipped like
    one without the needle. Inside a JSON string the quotes are escaped (``\\"``), so
    the text of a message can never look like that key.
    """
    i = chunk.find(needle, start)
    while i >= 1 and chunk[i - 1] == 0x22 and _null_follows(chunk, i + len(needle)):
        i = chunk.find(needle, i + len(needle))
    return i


def _null_follows(chunk: bytes, j: int) -> bool:
    return chunk.startswith(b'":null', j) or chunk.startswith(b'": null', j)


def open_event_end(chunk: bytes, *, line_start: bool) -> int:
    """Where the event open when ``chunk`` (no CR) came ends: just past its blank line.

    -1 when it does not end in ``chunk``. ``line_start``: the reader stands at the start
    of a line (of the open event) and not just after a CR, so an LF first in ``chunk`` is
    that blank line by itself.
    """
    if line_start and chunk.startswith(b"\n"):
        return 1
    end = chunk.find(b"\n\n")
    return -1 if end < 0 else end + 2
