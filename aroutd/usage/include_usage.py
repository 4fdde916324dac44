"""OpenAI streamed usage: asked of the upstream always, shown to the client only on request.

SPEC §9: for an OpenAI streaming chat completion (``POST /v1/chat/completions`` with
``"stream": true``) that does not ask for ``stream_options.include_usage``, aroutd asks
the upstream for usage, so the meter can count the tokens, and removes the extra
usage-only chunk from what the client receives; when the client asked, the chunk is
kept. The client's stream is otherwise byte-identical. Two pure pieces, no I/O:

- :func:`ask_for_usage` rewrites the request body. It returns None when the body must
  go as it is, and then the response is relayed unfiltered; otherwise it returns the
  body to send instead (recompute ``Content-Length``), and the response must go through
  a :class:`UsageChunkFilter`. The two outcomes always come together, so the returned
  value says both. An explicit ``"include_usage": false`` (or ``null``) counts as not
  asking: it is rewritten to ``true`` and the chunk stripped, so that client still sees
  no usage chunk, which is what it asked for.
- :class:`UsageChunkFilter` is fed the upstream's response body as it arrives and
  returns what the client gets now: everything but the usage-only chunk, byte for byte.
  Feed the usage meter the *unfiltered* upstream bytes (the dropped usage is also in
  :attr:`UsageChunkFilter.dropped_usage`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from aroutd.usage.chunk_scan import ChunkScan
from aroutd.usage.sse_skip import first_live, open_event_end

__all__ = ["MAX_EVENT_BYTES", "UsageChunkFilter", "ask_for_usage"]

MAX_EVENT_BYTES: Final = 1 << 20  # a longer event is passed through unfiltered, never held

_CHUNK_OBJECT: Final = "chat.completion.chunk"
_ADD_OPTIONS: Final = ',"stream_options":{"include_usage":true}'
_ADD_FLAG: Final = '"include_usage":true'

_WS_RE = re.compile(r"[ \t\n\r]*")  # JSON whitespace (RFC 8259 §2)


def _reject_constant(name: str) -> NoReturn:
    # NaN, Infinity, -Infinity: Python extensions, not JSON (RFC 8259 §6).
    raise ValueError(name)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")  # parsers disagree on which one wins
    return obj


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


# -- the request ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Member:
    """One member of a JSON object: its decoded key and value, and where the value is."""

    key: str
    value: Any
    start: int  # index of the value's first character
    end: int  # index just past the value


def _ws(text: str, i: int) -> int:
    match = _WS_RE.match(text, i)
    return i if match is None else match.end()


def _members(text: str, i: int) -> tuple[list[_Member], int]:
    """The members of the JSON object whose ``{`` is ``text[i]``, and the index past its ``}``.

    A real scan: every key and value is read by the JSON decoder, so text inside
    strings is never taken for structure. Raises ValueError on anything not JSON.
    """
    members: list[_Member] = []
    i = _ws(text, i + 1)
    if text.startswith("}", i):
        return members, i + 1
    while True:
        if not text.startswith('"', i):
            raise ValueError("expected a key")
        key, i = _DECODER.raw_decode(text, i)
        i = _ws(text, i)
        if not text.startswith(":", i):
            raise ValueError("expected ':'")
        start = _ws(text, i + 1)
        value, end = _DECODER.raw_decode(text, start)
        members.append(_Member(key, value, start, end))
        i = _ws(text, end)
        if text.startswith(",", i):
            i = _ws(text, i + 1)
        elif text.startswith("}", i):
            return members, i + 1
        else:
            raise ValueError("expected ',' or '}'")


def _by_key(members: list[_Member]) -> dict[str, _Member]:
    found = {m.key: m for m in members}
    if len(found) != len(members):
        raise ValueError("duplicate key")
    return found


def ask_for_usage(body: bytes) -> bytes | None:
    """The body to send instead, asking for usage, then strip the chunk; None: leave it.

    None (forward the body unchanged, relay the response unfiltered) unless ``body`` is
    a UTF-8 JSON object (RFC 8259, no NaN/Infinity) with ``"stream": true``, no
    duplicate key at its top level nor in ``stream_options``, and ``stream_options``
    absent, or an object without ``include_usage``, or with ``include_usage`` false or
    null. A ``stream_options`` that is not an object, or an ``include_usage`` of another
    type, is not ours to fix: the upstream judges it as the client sent it.

    The new body is the old one with one splice, every other byte as the client sent it:
    ``,"stream_options":{"include_usage":true}`` after the last top-level member, or
    ``"include_usage":true,`` just inside the ``{`` of ``stream_options``, or ``true``
    in place of the ``false``/``null``. The splice point is found by reading the object
    member by member with the JSON decoder, never by searching the raw text.
    """
    if b"stream" not in body and b"\\" not in body:
        return None  # no "stream" key, not even an escaped one: nothing to read
    try:
        text = body.decode("utf-8")  # strict: no UTF-16/32 guessing, no lone surrogates
        i = _ws(text, 0)
        if not text.startswith("{", i):
            return None
        top, end = _members(text, i)
        if _ws(text, end) != len(text):
            return None
        fields = _by_key(top)
        stream = fields.get("stream")
        if stream is None or stream.value is not True:
            return None
        options = fields.get("stream_options")
        if options is None:
            at = top[-1].end  # "stream" is there, so there is a last member
            return (text[:at] + _ADD_OPTIONS + text[at:]).encode("utf-8")
        if not isinstance(options.value, dict):
            return None
        inner, _ = _members(text, options.start)
        flag = _by_key(inner).get("include_usage")
        if flag is None:
            at = options.start + 1
            add = _ADD_FLAG + ("," if inner else "")
            return (text[:at] + add + text[at:]).encode("utf-8")
        if flag.value is False or flag.value is None:
            return (text[: flag.start] + "true" + text[flag.end :]).encode("utf-8")
        return None  # true: the client asked, it keeps its usage chunk
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


# -- the response -----------------------------------------------------------------------

_EOL_RE = re.compile(rb"[\r\n]")
_EMPTY_CHOICES_RE = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_CR, _LF, _SPACE = 0x0D, 0x0A, 0x20
_DATA_COLON = b"data:"


def _usage_of(data: bytes) -> dict[str, Any] | None:
    """The usage of an OpenAI usage-only chunk, the data of a whole event; else None.

    That is a JSON object (no duplicate key anywhere) with ``"choices": []``, a
    ``"usage"`` object, and ``"object"`` absent or ``"chat.completion.chunk"``. Only
    data holding the raw bytes ``"usage"`` and ``"choices":[]`` (JSON whitespace
    allowed) is parsed, which keeps the many content chunks cheap: keys spelt with
    ``\\u`` escapes are not seen, and that chunk is kept.
    """
    if b'"usage"' not in data or _EMPTY_CHOICES_RE.search(data) is None:
        return None
    try:
        doc = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("object", _CHUNK_OBJECT) != _CHUNK_OBJECT:
        return None
    usage = doc.get("usage")
    if doc.get("choices") != [] or not isinstance(usage, dict):
        return None
    return usage


class UsageChunkFilter:
    """Removes the OpenAI usage-only chunk from a ``text/event-stream`` as it streams.

    :meth:`feed` takes the upstream body chunk by chunk and returns the bytes to send
    to the client now; :meth:`flush`, at the end, returns what is still held. Events are
    split per the SSE spec: lines end in LF, CRLF or CR (a CR ending one chunk and an LF
    starting the next are one line end), an event ends at a blank line. An event is
    dropped, all its bytes with its blank line, when every line of it is a ``data``
    field and its data (joined with LF) is a usage-only chunk (see :func:`_usage_of`);
    its ``usage`` object is then :attr:`dropped_usage` (the last one, should there be
    several) and :attr:`dropped_events` counts them. All other bytes pass unchanged, in
    order; any split of the same bytes into chunks gives the same output.

    Only an event that may still be the usage chunk is held, and released as soon as it
    cannot be: a line that is not ``data``, data not starting with ``{``, a top-level
    ``"choices"`` that is not ``[]``, or more than ``max_event_bytes`` held (such an
    event passes unfiltered). Blank lines between events and events already released
    pass at once, a partial line too. At the latest an event goes out with its blank
    line. An event left open when the body ends is returned by :meth:`flush`, as is.
    Never raises on any bytes: what is not an SSE stream passes unchanged (a JSON error
    body, or a content-encoded one, which therefore keeps a usage chunk: filter only
    identity-encoded ``text/event-stream`` answers). A BOM starting the stream makes its
    first line no ``data`` line here, so that event is kept.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.dropped_usage: dict[str, Any] | None = None
        self.dropped_events = 0
        self.walked_bytes = 0  # bytes read line by line (the others passed unread)
        self._limit = max_event_bytes
        self._reset()
        self._late_lf: Literal["", "drop", "keep"] = ""  # what an LF just after a CR joins

    def _reset(self) -> None:
        self._in_event = False  # a line of the current event has been seen
        self._hold = False  # its bytes are held: it may be the usage chunk
        self._held = bytearray()  # while holding: all its bytes so far
        self._line_len = 0  # bytes of the current line so far, without its end
        self._line_start = 0  # where the current line starts in _held
        self._data = bytearray()  # while holding: the data lines read, each + LF
        self._scan: ChunkScan | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of the stream to send the client now (possibly none)."""
        out: bytearray | None = None
        start, n = 0, len(chunk)
        if b"\r" not in chunk:  # whole events end at b"\n\n": some pass unread (sse_skip)
            if self._in_event or self._hold or self._late_lf or self._line_len:
                out = bytearray()
                start = open_event_end(chunk, line_start=not (self._line_len or self._late_lf))
                self._walk(chunk, 0, n if start < 0 else start, out)  # then between events
            if start >= 0:  # pass the whole events before the first that may be the chunk
                first = first_live(chunk, b"usage", start)
                end = chunk.rfind(b"\n\n", start, n if first < 0 else first) + 2
                if end > 1:
                    if out is None:
                        if end == n:
                            return chunk
                        out = bytearray()
                    out += memoryview(chunk)[start:end]
                    start = end
        if out is None:
            out = bytearray()
        self._walk(chunk, n if start < 0 else start, n, out)
        if self._hold:
            self._check_held(out)
        return bytes(out)

    def _walk(self, chunk: bytes, i: int, n: int, out: bytearray) -> None:
        """``chunk[i:n]`` line by line, whatever state the last chunk left."""
        if i >= n:
            return
        self.walked_bytes += n - i
        if self._late_lf:
            if chunk[i] == _LF:  # the rest of a CRLF: it goes where the CR went
                if self._late_lf == "keep":
                    (self._held if self._hold else out).append(_LF)
                i += 1
            self._late_lf = ""
        while i < n:
            eol = _EOL_RE.search(chunk, i, n)
            if eol is None:
                self._text(chunk[i:n], out)
                break
            j = k = eol.start()
            if j > i:
                self._text(chunk[i:j], out)
            k += 1
            late = False
            if chunk[j] == _CR:
                if k == n:
                    late = True
                elif chunk[k] == _LF:
                    k += 1
            dropped = self._line_end(chunk[j:k], out)
            if late:
                self._late_lf = "drop" if dropped else "keep"
            i = k

    def flush(self) -> bytes:
        """The bytes still held (an event the stream left open), as they came; resets."""
        held = bytes(self._held)
        self._reset()
        self._late_lf = ""
        return held

    def _release(self, out: bytearray) -> None:
        out += self._held
        self._held.clear()
        self._data.clear()
        self._hold = False
        self._scan = None

    def _text(self, piece: bytes, out: bytearray) -> None:
        """Bytes of the current line, no line end among them."""
        if not self._in_event:
            self._in_event = self._hold = True
        if not self._hold:
            out += piece
            self._line_len += len(piece)
            return
        if self._line_len == 0:
            self._line_start = len(self._held)
        self._line_len += len(piece)
        self._held += piece
        head = self._held[self._line_start : self._line_start + len(_DATA_COLON)]
        if not _DATA_COLON.startswith(head):  # not "data", "data:…" or a start of them
            self._release(out)

    def _line_end(self, end: bytes, out: bytearray) -> bool:
        """A line end; True when it ended the usage chunk, which was dropped with it."""
        if not self._in_event:  # a blank line between events
            out += end
            return False
        if self._line_len == 0:
            return self._dispatch(end, out)
        self._line_len = 0
        if not self._hold:
            out += end
            return False
        line = self._held[self._line_start :]
        self._held += end
        if line == b"data" or line.startswith(_DATA_COLON):
            value = line[len(_DATA_COLON) :]
            self._data += value[1:] if value[:1] == b" " else value
            self._data.append(_LF)
            if len(self._held) > self._limit:
                self._release(out)
        else:
            self._release(out)
        return False

    def _dispatch(self, end: bytes, out: bytearray) -> bool:
        """The blank line ending the current event: send it, or drop the usage chunk."""
        dropped = False
        if self._hold:
            usage = None
            if len(self._held) <= self._limit:
                usage = _usage_of(bytes(self._data[:-1]))
            if usage is None:
                out += self._held
            else:
                self.dropped_usage = usage
                self.dropped_events += 1
                dropped = True
        if not dropped:
            out += end
        self._reset()
        return dropped

    def _check_held(self, out: bytearray) -> None:
        """At the end of a chunk: release the held event if it can no longer be dropped."""
        if len(self._held) > self._limit:
            self._release(out)
            return
        if self._scan is None:  # made only for an event still open when a chunk ends
            self._scan = ChunkScan()
        scan = self._scan
        # What the scan has not read of the data so far: the complete data lines, then
        # the value of the partial line once past "data:" and the space that may follow.
        # Sliced from where the scan stopped, so a long held event costs linear time.
        have, fed = len(self._data), scan.fed
        value_at = len(self._held)
        if self._line_len > len(_DATA_COLON):
            value_at = self._line_start + len(_DATA_COLON)
            value_at += self._held[value_at] == _SPACE
        if fed < have:
            fresh = bytes(self._data[fed:]) + self._held[value_at:]
        else:
            fresh = bytes(self._held[value_at + fed - have :])
        if scan.feed(fresh):
            self._release(out)
