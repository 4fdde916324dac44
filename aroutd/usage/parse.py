"""Token usage read from an upstream's answer as it streams past: a pure, incremental meter.

:class:`UsageMeter` is fed the response body chunk by chunk beside the relay: it never
holds a chunk back, never raises, and keeps at most a bounded tail. :meth:`UsageMeter.usage`
says what the answer has reported so far (None: nothing yet), so a stream cut in the
middle still reports what came before the cut. Any split of the same bytes into chunks
gives the same usage.

The body is read one of two ways, by its content type:

- ``text/event-stream``: events split per the SSE spec (lines end in LF, CRLF or CR; an
  event ends at a blank line; only ``data`` fields count, joined with LF; an event left
  open when the body ends is not one). Only the partial last line and the current event's
  data lines are held, together at most ``max_event_bytes``: a longer event is skipped.
  An event's data is parsed as JSON only when it can hold usage, that is when the bytes
  ``usage`` (Gemini: ``usageMetadata``) appear in it other than once as ``"usage":null``
  or ``"usage": null``: the many content events stay cheap (``parsed_events`` counts the
  parses; a key spelt with JSON escapes is not seen). ``[DONE]`` holds none.
- anything else (``application/json``, none): one JSON document, held up to
  ``max_json_bytes`` and parsed when :meth:`UsageMeter.usage` is asked (then cached); a
  longer body reports None and is no longer held. Feed it decoded bytes: a
  content-encoded (gzip) body reads as garbage, which reports None.

Per provider kind, the last report wins:

- ``openai``: the ``usage`` of a chat completion (streamed with
  ``stream_options.include_usage``: of the last chunk, ``usage: null`` on the others), of
  embeddings, of a Responses API response, or ``response.usage`` of the Responses API
  events ``response.completed``, ``response.incomplete`` and ``response.failed``. The chat
  names (prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens,
  completion_tokens_details.reasoning_tokens) are read, else the Responses names
  (input_tokens, output_tokens, input_tokens_details.cached_tokens,
  output_tokens_details.reasoning_tokens).
- ``anthropic``: the ``usage`` of a message; streamed, ``message.usage`` of
  ``message_start``, then every count present in a ``message_delta``'s usage replaces the
  one held (they are cumulative). Input tokens are input + cache read + cache creation;
  reasoning is ``output_tokens_details.thinking_tokens``.
- ``gemini``: the ``usageMetadata`` of a GenerateContentResponse, of each SSE event, or of
  the last element of a JSON array (streamGenerateContent without ``alt=sse``) that has
  one. Output tokens are candidates + thoughts.

A count is an int from 0 to :data:`MAX_TOKENS`; anything else there (a bool, a float, a
string, a negative or huge number) is not reported, and a usage object without one valid
count is no report at all. Wrong types, deep nesting and invalid UTF-8 are not reports either.
"""

from __future__ import annotations

from typing import Literal

from aroutd.usage.reports import (
    MAX_TOKENS,
    AnthropicCounts,
    Usage,
    gemini_document,
    openai_document,
    parse_json,
)
from aroutd.usage.sse_skip import first_live, open_event_end

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_JSON_BYTES",
    "MAX_TOKENS",
    "ProviderKind",
    "Usage",
    "UsageMeter",
]

ProviderKind = Literal["openai", "anthropic", "gemini"]

MAX_JSON_BYTES = 1 << 20  # a JSON body held for parsing; beyond it, no usage
MAX_EVENT_BYTES = 1 << 20  # one SSE event's lines, held until its blank line; beyond, skipped
_BOM = b"\xef\xbb\xbf"


def _is_event_stream(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"text/event-stream"


class UsageMeter:
    """Fed the response body as it streams; never holds on to more than a bounded tail.

    ``parsed_events`` counts the JSON parses done (SSE events that could hold usage, or
    the JSON body's one parse), so tests can see that content events are not parsed;
    ``walked_bytes`` the SSE bytes read line by line (the others were skipped unread).
    """

    __slots__ = (
        "_anthropic",
        "_body",
        "_bom_pending",
        "_cached",
        "_data",
        "_event_bytes",
        "_event_dropped",
        "_gave_up",
        "_kind",
        "_last",
        "_line_dropped",
        "_max_event",
        "_max_json",
        "_needle",
        "_nulls",
        "_partial",
        "_skip_lf",
        "_sse",
        "_stale",
        "parsed_events",
        "walked_bytes",
    )

    def __init__(
        self,
        provider_kind: ProviderKind,
        *,
        content_type: bytes | None,
        max_json_bytes: int = MAX_JSON_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self._kind = provider_kind
        self._sse = _is_event_stream(content_type)
        self._max_json = max_json_bytes
        self._max_event = max_event_bytes
        self._needle = b"usageMetadata" if provider_kind == "gemini" else b"usage"
        self._nulls = (b'"' + self._needle + b'":null', b'"' + self._needle + b'": null')
        self._anthropic = AnthropicCounts()
        self._last: Usage | None = None  # OpenAI and Gemini: the latest report
        self.parsed_events = 0
        self.walked_bytes = 0
        # JSON: the body so far, until it outgrows max_json_bytes
        self._body = bytearray()
        self._gave_up = False
        self._stale = False  # bytes came since the body was last parsed
        self._cached: Usage | None = None
        # SSE: the open line, the open event's data lines, and where the parser stands
        self._partial = bytearray()
        self._line_dropped = False  # the open line outgrew the event's room: its bytes are gone
        self._data: list[bytes] = []
        self._event_bytes = 0  # bytes of the open event's complete lines (terminators counted)
        self._event_dropped = False  # the open event outgrew max_event_bytes: skipped to its end
        self._skip_lf = False  # the last chunk ended in CR: an LF starting the next is its CRLF
        self._bom_pending = True  # a UTF-8 BOM starting the stream is not part of the first line

    # -- what the meter holds and says ---------------------------------------------------

    @property
    def held_bytes(self) -> int:
        """Bytes of the body held right now (the JSON body, or the open SSE line and event)."""
        return len(self._body) + len(self._partial) + sum(len(d) for d in self._data)

    def usage(self) -> Usage | None:
        """What the answer reported so far; None while (or if) it reported nothing."""
        if self._sse:
            return self._anthropic.usage() if self._kind == "anthropic" else self._last
        if self._gave_up:
            return None
        if self._stale:
            self._stale = False
            self.parsed_events += 1
            doc = parse_json(self._body)
            if self._kind == "anthropic":
                counts = AnthropicCounts()
                counts.take_document(doc)
                self._cached = counts.usage()
            else:
                self._cached = self._document_usage(doc)
        return self._cached

    def _document_usage(self, doc: object) -> Usage | None:
        if self._kind == "gemini":
            return gemini_document(doc)
        return openai_document(doc)

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the body, as they pass to the client. Cheap; never raises."""
        if not chunk:
            return
        if self._sse:
            self._feed_sse(chunk)
        elif not self._gave_up:
            if len(self._body) + len(chunk) > self._max_json:
                self._gave_up = True
                self._body = bytearray()  # let it go: the body is too long to be metered
                self._cached = None
            else:
                self._body += chunk
                self._stale = True

    def _feed_sse(self, chunk: bytes) -> None:
        start = 0
        if b"\r" not in chunk:  # whole events end at b"\n\n": some need no reading (sse_skip)
            if not self._between_events():
                line_start = not (self._partial or self._line_dropped or self._skip_lf)
                start = open_event_end(chunk, line_start=line_start)
                self._read(chunk if start < 0 else chunk[:start])  # then between events
            if start >= 0:  # skip the whole events before the first that may hold usage
                first = first_live(chunk, self._needle, start)
                end = chunk.rfind(b"\n\n", start, len(chunk) if first < 0 else first)
                if end >= 0:
                    start = end + 2
        if 0 <= start < len(chunk):
            self._read(chunk[start:] if start else chunk)

    def _between_events(self) -> bool:
        """Nothing open (no line, event, CR, BOM): as after a blank line, or at the start."""
        return not (
            self._partial
            or self._data
            or self._event_bytes
            or self._line_dropped
            or self._skip_lf
            or self._bom_pending
            or self._event_dropped
        )

    def _read(self, chunk: bytes) -> None:
        """Line by line, whatever state the last chunk left (chunk is not empty)."""
        self.walked_bytes += len(chunk)
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
                if not chunk:
                    return
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        first = chunk.find(b"\n")
        if first < 0:
            self._grow(chunk)
            return
        self._grow(chunk[:first])
        if self._line_dropped:
            self._line_dropped = False
            self._bom_pending = False
            self._drop_event()
        else:
            line = bytes(self._partial)
            self._partial.clear()
            self._line(line)
        last = chunk.rfind(b"\n")
        if last > first:
            for line in chunk[first + 1 : last].split(b"\n"):
                self._line(line)
        if last + 1 < len(chunk):
            self._grow(chunk[last + 1 :])

    def _grow(self, piece: bytes) -> None:
        """More of the open line; past the event's room the line is dropped (not blank)."""
        if not piece or self._line_dropped:
            return
        if (
            self._event_dropped
            or self._event_bytes + len(self._partial) + len(piece) > self._max_event
        ):
            self._line_dropped = True
            self._partial = bytearray()
            return
        self._partial += piece

    def _drop_event(self) -> None:
        self._event_dropped = True
        self._data = []

    def _line(self, line: bytes) -> None:
        """One complete line, without its terminator."""
        size = len(line) + 1  # counted as _grow counts it, the BOM included
        if self._bom_pending:
            self._bom_pending = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            self._dispatch()
            return
        if self._event_dropped:
            return
        self._event_bytes += size
        if self._event_bytes > self._max_event:
            self._drop_event()
            return
        if line.startswith(b"data"):
            if len(line) == 4:
                self._data.append(b"")
            elif line[4] == 0x3A:  # b":"
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        # other fields (event, id, retry) and comments (":") say nothing about usage

    def _dispatch(self) -> None:
        data, dropped = self._data, self._event_dropped
        self._data, self._event_dropped, self._event_bytes = [], False, 0
        if dropped or not data:
            return
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        n = payload.count(self._needle)
        if n == 0 or (n == 1 and (self._nulls[0] in payload or self._nulls[1] in payload)):
            return
        self.parsed_events += 1
        doc = parse_json(payload)
        if self._kind == "anthropic":
            self._anthropic.take_document(doc)
            return
        found = self._document_usage(doc)
        if found is not None:
            self._last = found
