"""Each provider's usage report, read from a parsed JSON document into one :class:`Usage`.

Pure functions of the document, for :mod:`aroutd.usage.parse` (which says, in its
docstring, what is read for each provider kind and which counts are believed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "MAX_TOKENS",
    "AnthropicCounts",
    "Usage",
    "gemini_document",
    "openai_document",
    "parse_json",
]

MAX_TOKENS = 10**12  # a count above this is not believed
_MAX_INT_CHARS = 19  # longer JSON integers are not parsed at all (not even into a huge int)
_RESPONSES_DONE = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ANTHROPIC_COUNTS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens an answer reports, in one shape for every provider."""

    input_tokens: int = 0  # every prompt token, the cached ones included
    output_tokens: int = 0  # every generated token, reasoning included
    cached_input_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it (Anthropic; 0 elsewhere)
    reasoning_tokens: int = 0  # of output_tokens, spent on reasoning (thinking)

    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def _small_int(text: str) -> int | None:
    """JSON's parse_int: a number too long to be a count is None, never a ValueError."""
    return int(text) if len(text) <= _MAX_INT_CHARS else None


def parse_json(data: bytes | bytearray) -> object:
    """The JSON value of ``data``; None for anything that is not one."""
    try:
        return json.loads(data, parse_int=_small_int)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _count(obj: object, *path: str) -> int | None:
    """The count at ``path`` inside ``obj``, or None when it is missing or not a count."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    if type(obj) is int and 0 <= obj <= MAX_TOKENS:
        return obj
    return None


def _usage(
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cached: int | None = None,
    reasoning: int | None = None,
) -> Usage | None:
    counts = (input_tokens, output_tokens, cached, reasoning)
    if all(c is None for c in counts):
        return None
    return Usage(
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cached_input_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def _openai_usage(usage: object) -> Usage | None:
    """A chat completions / embeddings ``usage``, or a Responses API one."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if prompt is not None or completion is not None:
        return _usage(
            input_tokens=prompt,
            output_tokens=completion,
            cached=_count(usage, "prompt_tokens_details", "cached_tokens"),
            reasoning=_count(usage, "completion_tokens_details", "reasoning_tokens"),
        )
    return _usage(
        input_tokens=_count(usage, "input_tokens"),
        output_tokens=_count(usage, "output_tokens"),
        cached=_count(usage, "input_tokens_details", "cached_tokens"),
        reasoning=_count(usage, "output_tokens_details", "reasoning_tokens"),
    )


def openai_document(doc: object) -> Usage | None:
    if not isinstance(doc, dict):
        return None
    found = _openai_usage(doc.get("usage"))
    kind = doc.get("type")
    if found is None and isinstance(kind, str) and kind in _RESPONSES_DONE:
        response = doc.get("response")
        if isinstance(response, dict):
            found = _openai_usage(response.get("usage"))
    return found


def _gemini_usage(meta: object) -> Usage | None:
    """A Gemini ``usageMetadata``."""
    candidates = _count(meta, "candidatesTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return _usage(
        input_tokens=_count(meta, "promptTokenCount"),
        output_tokens=output,
        cached=_count(meta, "cachedContentTokenCount"),
        reasoning=thoughts,
    )


def gemini_document(doc: object) -> Usage | None:
    """A GenerateContentResponse, or a JSON array of them (the last one with usage)."""
    if isinstance(doc, list):
        for item in reversed(doc):
            found = gemini_document(item) if isinstance(item, dict) else None
            if found is not None:
                return found
        return None
    if not isinstance(doc, dict):
        return None
    return _gemini_usage(doc.get("usageMetadata"))


class AnthropicCounts:
    """Anthropic's counts as the stream reports them, each replaced by its latest value."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def take(self, usage: object) -> None:
        for name in _ANTHROPIC_COUNTS:
            value = _count(usage, name)
            if value is not None:
                self.counts[name] = value
        thinking = _count(usage, "output_tokens_details", "thinking_tokens")
        if thinking is not None:
            self.counts["thinking_tokens"] = thinking

    def take_document(self, doc: object) -> None:
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if kind == "message_start":
            message = doc.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self.counts.clear()  # a message starts: its usage is the whole record
                self.take(usage)
        else:  # message_delta, or a whole message (JSON)
            self.take(doc.get("usage"))

    def usage(self) -> Usage | None:
        c = self.counts
        if not c:
            return None
        read, created = c.get("cache_read_input_tokens", 0), c.get("cache_creation_input_tokens", 0)
        return Usage(
            input_tokens=c.get("input_tokens", 0) + read + created,
            output_tokens=c.get("output_tokens", 0),
            cached_input_tokens=read,
            cache_write_tokens=created,
            reasoning_tokens=c.get("thinking_tokens", 0),
        )
