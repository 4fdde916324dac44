"""aroutd.usage.include_usage: ask an OpenAI stream for usage, strip it for the client (SPEC §9)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.usage.include_usage import UsageChunkFilter, ask_for_usage

Json = Any
ADDED = b',"stream_options":{"include_usage":true}'

# -- ask_for_usage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b'{"model":"gpt-4o","stream":true}',
            b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}',
            id="added",
        ),
        pytest.param(
            b'{\n  "stream": true,\n  "model": "m"\n}\n',
            b'{\n  "stream": true,\n  "model": "m","stream_options":{"include_usage":true}\n}\n',
            id="pretty-whitespace-kept",
        ),
        pytest.param(
            b'{"stream": true, "stream_options": {}}',
            b'{"stream": true, "stream_options": {"include_usage":true}}',
            id="empty-options",
        ),
        pytest.param(
            b'{"stream_options" : { "x": 1 }, "stream": true}',
            b'{"stream_options" : {"include_usage":true, "x": 1 }, "stream": true}',
            id="options-without-flag",
        ),
        pytest.param(
            b'{"stream":true,"stream_options":{"include_usage" : false,"x":1}}',
            b'{"stream":true,"stream_options":{"include_usage" : true,"x":1}}',
            id="explicit-false-counts-as-not-asked",
        ),
        pytest.param(
            b'{"stream":true,"stream_options":{"include_usage":null}}',
            b'{"stream":true,"stream_options":{"include_usage":true}}',
            id="null-counts-as-not-asked",
        ),
        pytest.param(
            b'{"messages": [{"content": "\\"stream_options\\": {"}], "stream": true}',
            b'{"messages": [{"content": "\\"stream_options\\": {"}], "stream": true' + ADDED + b"}",
            id="lookalike-inside-a-string",
        ),
        pytest.param(
            b'{"m":{"stream_options":{}},"stream":true}',
            b'{"m":{"stream_options":{}},"stream":true' + ADDED + b"}",
            id="nested-options-are-not-ours",
        ),
        pytest.param(
            b'{"\\u0073tream":true,"msg":"h\xc3\xa9 \\u00e9 \xf0\x9f\x98\x80"}',
            b'{"\\u0073tream":true,"msg":"h\xc3\xa9 \\u00e9 \xf0\x9f\x98\x80"' + ADDED + b"}",
            id="escaped-key-and-utf8-kept",
        ),
        pytest.param(
            b'{"stream":true,"stream_options":{"\\u0069nclude_usage":false}}',
            b'{"stream":true,"stream_options":{"\\u0069nclude_usage":true}}',
            id="escaped-flag",
        ),
    ],
)
def test_ask_for_usage_splices(body: bytes, expected: bytes) -> None:
    assert ask_for_usage(body) == expected
    assert json.loads(expected)["stream_options"]["include_usage"] is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"stream":true,"stream_options":{"include_usage":true}}', id="asked"),
        pytest.param(b'{"stream":false}', id="not-streaming"),
        pytest.param(b'{"model":"m"}', id="stream-absent"),
        pytest.param(b'{"stream":1}', id="stream-not-true"),
        pytest.param(b'{"stream":"true"}', id="stream-string"),
        pytest.param(b'{"stream":true,"stream_options":null}', id="options-null"),
        pytest.param(b'{"stream":true,"stream_options":"x"}', id="options-string"),
        pytest.param(b'{"stream":true,"stream_options":[]}', id="options-array"),
        pytest.param(b'{"stream":true,"stream_options":{"include_usage":1}}', id="flag-number"),
        pytest.param(b'{"stream":true,"stream":true}', id="duplicate-top-level"),
        pytest.param(b'{"stream":true,"model":"a","model":"b"}', id="duplicate-model"),
        pytest.param(b'{"stream":true,"\\u0073tream":false}', id="duplicate-escaped"),
        pytest.param(
            b'{"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}',
            id="duplicate-flag",
        ),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"stream"', id="string"),
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"stream":true', id="truncated"),
        pytest.param(b'{"stream":true} {}', id="trailing-data"),
        pytest.param(b'{"stream":true,}', id="trailing-comma"),
        pytest.param(b'{"stream":true,"t":NaN}', id="nan"),
        pytest.param(b'{"stream":true,"t":"\xff"}', id="not-utf8"),
        pytest.param(b'\xef\xbb\xbf{"stream":true}', id="bom"),
        pytest.param('{"stream":true}'.encode("utf-16"), id="utf16"),
        pytest.param(b'{"stream":true,"t":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep"),
    ],
)
def test_ask_for_usage_leaves_alone(body: bytes) -> None:
    assert ask_for_usage(body) is None


_MISSING: Any = object()


def _expected(doc: dict[str, Json]) -> dict[str, Json] | None:
    """The model: what the new body must parse to, or None."""
    if doc.get("stream") is not True:
        return None
    options = doc.get("stream_options", _MISSING)
    if options is _MISSING:
        return {**doc, "stream_options": {"include_usage": True}}
    if not isinstance(options, dict):
        return None
    flag = options.get("include_usage", _MISSING)
    if flag is _MISSING or flag is False or flag is None:
        return {**doc, "stream_options": {**options, "include_usage": True}}
    return None


_TRICKY = st.sampled_from(
    ['"stream_options": {', "stream", "}", "{", '"', "\\", ',"a":1}', "\u00e9", "\U0001f600"]
)
_TEXT = st.lists(st.one_of(_TRICKY, st.text(max_size=5)), max_size=4).map("".join)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _TEXT
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8,
)
_KEYS = st.one_of(_TEXT, st.sampled_from(["stream", "stream_options", "model", "messages"]))
_OPTIONS = st.one_of(
    st.dictionaries(
        st.one_of(_TEXT, st.just("include_usage")),
        st.one_of(_VALUES, st.sampled_from([True, False, None])),
        max_size=3,
    ),
    _VALUES,
)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[dict[str, Json], bytes]:
    doc: dict[str, Json] = draw(st.dictionaries(_KEYS, _VALUES, max_size=5))
    if draw(st.booleans()):
        doc["stream"] = draw(st.sampled_from([True, True, True, False, 1, None]))
    if draw(st.booleans()):
        doc["stream_options"] = draw(_OPTIONS)
    items = list(doc.items())
    items = draw(st.permutations(items)) if items else items
    doc = dict(items)
    style: dict[str, Any] = draw(
        st.sampled_from(
            [
                {"separators": (",", ":")},
                {},
                {"indent": 2},
                {"indent": "\t", "separators": (" ,", " : ")},
            ]
        )
    )
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), **style)
    pad = draw(st.sampled_from(["", " ", "\n", "\r\n\t "]))
    return doc, (pad + text + pad).encode("utf-8", "surrogatepass")


def _inserted(body: bytes, got: bytes, text: bytes, first_difference: int) -> bool:
    """``got`` is ``body`` with ``text`` inserted somewhere (at or before the difference)."""
    return any(got == body[:k] + text + body[k:] for k in range(first_difference + 1))


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_ask_for_usage_always_parses_to_the_model(request: tuple[dict[str, Json], bytes]) -> None:
    doc, body = request
    want = _expected(doc)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:  # a lone surrogate from ensure_ascii=False: not UTF-8
        want = None
    got = ask_for_usage(body)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert json.loads(got) == want
    # one splice, every other byte as sent
    at = next((i for i, (a, b) in enumerate(zip(body, got, strict=False)) if a != b), len(body))
    if doc.get("stream_options", _MISSING) is _MISSING:
        assert _inserted(body, got, ADDED, at)
    elif "include_usage" not in doc["stream_options"]:
        flag = b'"include_usage":true' + (b"," if doc["stream_options"] else b"")
        assert _inserted(body, got, flag, at)
    else:  # false or null became true
        old = b"false" if doc["stream_options"]["include_usage"] is False else b"null"
        assert got == body[:at] + b"true" + body[at + len(old) :]


# -- UsageChunkFilter -------------------------------------------------------------------

_HEAD = (
    '{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk",'
    '"created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default",'
    '"system_fingerprint":"fp_eb9dce56a8",'
)


def _content(delta: str, finish: str = "null") -> bytes:
    choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}'
    return f'data: {_HEAD}"choices":[{choice}],"usage":null,"obfuscation":"lE"}}\n\n'.encode()


USAGE: dict[str, Json] = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
USAGE_EVENT = (
    f'data: {_HEAD}"choices":[],"usage":{json.dumps(USAGE, separators=(",", ":"))},'
    '"obfuscation":"9dRx2"}\n\n'
).encode()
CONTENT = (
    _content('{"role":"assistant","content":"","refusal":null}')
    + _content('{"content":"Hello"}')
    + _content('{"content":"! How can I"}')
    + _content('{"content":" help \\"usage\\": {} you today?\\n\\n"}')
    + _content("{}", finish='"stop"')
)
DONE = b"data: [DONE]\n\n"
STREAM = CONTENT + USAGE_EVENT + DONE


def _eol(data: bytes, eol: bytes) -> bytes:
    return data.replace(b"\n", eol)


def _feed_all(chunks: list[bytes], f: UsageChunkFilter | None = None) -> bytes:
    f = UsageChunkFilter() if f is None else f
    return b"".join(f.feed(c) for c in chunks) + f.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_filter_drops_exactly_the_usage_event(eol: bytes) -> None:
    f = UsageChunkFilter()
    out = f.feed(_eol(STREAM, eol)) + f.flush()
    assert out == _eol(CONTENT + DONE, eol)
    assert f.dropped_usage == USAGE
    assert f.dropped_events == 1


def test_filter_passes_a_stream_without_usage_unchanged() -> None:
    f = UsageChunkFilter()
    assert _feed_all([CONTENT + DONE], f) == CONTENT + DONE
    assert f.dropped_usage is None
    assert f.dropped_events == 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30),
)
def test_any_split_gives_the_same_output(eol: bytes, with_usage: bool, cuts: list[int]) -> None:
    data = _eol(STREAM if with_usage else CONTENT + DONE, eol)
    f = UsageChunkFilter()
    assert _feed_all(_split(data, cuts), f) == _eol(CONTENT + DONE, eol)
    assert f.dropped_usage == (USAGE if with_usage else None)


def test_byte_by_byte_crlf() -> None:
    data = _eol(STREAM, b"\r\n")
    f = UsageChunkFilter()
    assert _feed_all([data[i : i + 1] for i in range(len(data))], f) == _eol(
        CONTENT + DONE, b"\r\n"
    )
    assert f.dropped_usage == USAGE


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    f = UsageChunkFilter()
    event = _eol(USAGE_EVENT, b"\r\n")
    # the CR of the blank line ends one chunk: the event is dropped, its LF with it
    assert f.feed(event[:-1]) == b""
    assert f.feed(b"\n" + DONE) == DONE
    assert f.dropped_usage == USAGE
    # an LF after a kept event's CR goes out with it
    f = UsageChunkFilter()
    assert f.feed(b"data: [DONE]\r\r") == b"data: [DONE]\r\r"
    assert f.feed(b"\n") == b"\n"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(  # some providers put usage on the last content chunk
            f'data: {_HEAD}"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],'
            f'"usage":{json.dumps(USAGE)}}}\n\n',
            id="choices-and-usage",
        ),
        pytest.param(f'data: {_HEAD}"choices":[],"usage":null}}\n\n', id="usage-null"),
        pytest.param(f'data: {_HEAD}"choices":[]}}\n\n', id="no-usage"),
        pytest.param('data: {"object":"response","choices":[],"usage":{}}\n\n', id="other-object"),
        pytest.param('data: {"usage":{"t":1}}\n\n', id="no-choices"),
        pytest.param('data: {"choices":[],"usage":{"t":1},"usage":{"t":2}}\n\n', id="duplicate"),
        pytest.param('data: {"choices":[],"usage":{"t":1}} x\n\n', id="trailing-garbage"),
        pytest.param('event: x\ndata: {"choices":[],"usage":{"t":1}}\n\n', id="named-event"),
        pytest.param('id: 7\ndata: {"choices":[],"usage":{"t":1}}\n\n', id="with-id"),
        pytest.param(': hi\ndata: {"choices":[],"usage":{"t":1}}\n\n', id="with-comment"),
        pytest.param('data: {"\\u0063hoices":[],"usage":{"t":1}}\n\n', id="escaped-key"),
        pytest.param('data: {"choices":[],"usage":{"t":1}}', id="never-ended"),
        pytest.param('data: ["choices",[],"usage",{"t":1}]\n\n', id="array"),
        pytest.param('data: {"x":{"choices":[]},"usage":{"t":1}}\n\n', id="nested-choices"),
    ],
)
def test_filter_keeps_what_is_not_the_usage_only_chunk(event: str) -> None:
    data = event.encode() + DONE
    f = UsageChunkFilter()
    assert _feed_all([data], f) == data
    assert f.dropped_usage is None
    f = UsageChunkFilter()
    assert _feed_all([data[i : i + 1] for i in range(len(data))], f) == data


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(b'data:{"choices":[],"usage":{"t":1}}\n\n', id="no-space"),
        pytest.param(b'data:  { "choices" : [ ] , "usage" : {"t":1} }\n\n', id="spaces"),
        pytest.param(b'data: {"choices":\ndata: [],"usage":{"t":1}}\n\n', id="two-data-lines"),
        pytest.param(b'data: {"usage":{"t":1},"choices":[]}\n\n', id="usage-first"),
    ],
)
def test_filter_drops_usage_only_chunk_variants(event: bytes) -> None:
    for chunks in ([event + DONE], [event[i : i + 1] for i in range(len(event))] + [DONE]):
        f = UsageChunkFilter()
        assert _feed_all(chunks, f) == DONE
        assert f.dropped_usage == {"t": 1}


def test_blank_lines_and_comments_pass() -> None:
    data = b"\n\r\n: keep-alive\n\n" + USAGE_EVENT + b"\n\n" + DONE
    f = UsageChunkFilter()
    assert _feed_all([data], f) == b"\n\r\n: keep-alive\n\n\n\n" + DONE
    assert f.dropped_usage == USAGE


def test_a_complete_event_goes_out_at_once() -> None:
    f = UsageChunkFilter()
    for event in [_content('{"content":"Hi"}'), b": ping\n\n", DONE]:
        assert f.feed(event) == event


def test_a_partial_event_goes_out_as_soon_as_it_cannot_be_the_usage_chunk() -> None:
    event = _content('{"content":"Hi"}')
    at = event.index(b'"choices":[{') + len(b'"choices":[{')
    f = UsageChunkFilter()
    assert f.feed(event[: at - 1]) == b""  # "choices":[ could still be empty
    assert f.feed(event[at - 1 : at]) == event[:at]  # the { says it is not
    assert f.feed(event[at:-3]) == event[at:-3]  # the rest of the line flows
    assert f.feed(event[-3:]) == event[-3:]
    assert f.feed(b"data: [DO") == b"data: [DO"  # not JSON
    assert f.feed(b"NE]\n\n") == b"NE]\n\n"
    assert f.feed(b"eve") == b"eve"  # not a data line
    usage = b'data: {"usage":{"t":1},"choices":[]}\n'
    assert f.feed(b"nt: x\n" + usage) == b"nt: x\n" + usage  # in an event with an event line
    assert f.feed(b"\n") == b"\n"
    assert f.feed(usage[:-1]) == b""  # may be it: held
    assert f.feed(b"\n") == b""
    assert f.feed(b"\n") == b""
    assert f.dropped_usage == {"t": 1}


def test_a_long_event_is_released_unfiltered() -> None:
    big = b'data: {"choices":[],"usage":{"t":1},"pad":"' + b"x" * 300 + b'"}\n\n'
    f = UsageChunkFilter(max_event_bytes=100)
    out = f.feed(big[:150])
    assert out == big[:150]  # not held past the bound
    assert f.feed(big[150:]) == big[150:]
    assert f.dropped_usage is None
    f = UsageChunkFilter(max_event_bytes=100)
    assert f.feed(big) == big  # the same in one chunk
    small = b'data: {"choices":[],"usage":{"t":1}}\n\n'
    assert f.feed(small) == b""  # the bound is per event


def test_the_bound_counts_an_lf_that_comes_late() -> None:
    line = b'data: {"choices":[],"usage":{"t":1}}\r\n'
    event = line + b"\r\n"
    for chunks in ([event], [line[:-1], event[len(line) - 1 :]]):
        f = UsageChunkFilter(max_event_bytes=len(line) - 1)  # the CR fits, its LF does not
        assert _feed_all(chunks, f) == event
    f = UsageChunkFilter(max_event_bytes=len(line))
    assert _feed_all([line[:-1], event[len(line) - 1 :]], f) == b""


def test_flush_returns_what_is_held() -> None:
    f = UsageChunkFilter()
    assert f.feed(b'data: {"choices":[],"usage":{"t":1}}\n') == b""
    assert f.flush() == b'data: {"choices":[],"usage":{"t":1}}\n'
    assert f.flush() == b""
    assert f.feed(DONE) == DONE


# -- garbage, against a plain reference ----------------------------------------------

_LINE_RE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _reference_usage(data: bytes) -> dict[str, Json] | None:
    def pairs(items: list[tuple[str, Json]]) -> dict[str, Json]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("object", "chat.completion.chunk") != (
        "chat.completion.chunk"
    ):
        return None
    usage = doc.get("usage")
    return usage if doc.get("choices") == [] and isinstance(usage, dict) else None


def _reference(stream: bytes, limit: int) -> bytes:
    """Whole-stream SSE splitting, events judged once complete."""
    out, event = [], []
    for line in _LINE_RE.findall(stream):
        if line.rstrip(b"\r\n"):
            event.append(line)
            continue
        content = b"".join(event)
        values = [ln.rstrip(b"\r\n") for ln in event]
        if (
            event
            and len(content) <= limit
            and all(v == b"data" or v.startswith(b"data:") for v in values)
        ):
            data = b"\n".join(v[6:] if v[5:6] == b" " else v[5:] for v in values)
            if _reference_usage(data) is not None:
                event = []
                continue
        out += [content, line]
        event = []
    return b"".join(out + event)


_SOUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"data: ",
                b"data:",
                b"data",
                b"event: x",
                b":",
                b"\n",
                b"\r",
                b"\r\n",
                b"\n\n",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b'"',
                b"\\",
                b'"choices":[]',
                b'"choices": [ ]',
                b'"choices":[{}]',
                b'"usage":{"t":1}',
                b'"usage":null',
                b'"object":"chat.completion.chunk"',
                b'"object":"x"',
                b'{"choices":[],"usage":{"t":1}}',
                USAGE_EVENT,
                DONE,
                b"\xff\xfe",
                b"\xef\xbb\xbf",
            ]
        ),
        st.binary(max_size=6),
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(_SOUP, st.lists(st.integers(min_value=0, max_value=600), max_size=12), st.booleans())
def test_garbage_never_raises_and_matches_the_reference(
    stream: bytes, cuts: list[int], small: bool
) -> None:
    limit = 40 if small else 1 << 20
    want = _reference(stream, limit)
    assert _feed_all([stream], UsageChunkFilter(limit)) == want
    assert _feed_all(_split(stream, cuts), UsageChunkFilter(limit)) == want


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_random_bytes_pass_unchanged(stream: bytes, cuts: list[int]) -> None:
    assert _feed_all(_split(stream, cuts)) == stream


# -- large chunks, and what is read line by line ------------------------------------------

RECORDED = (Path(__file__).parent / "fixtures" / "usage" / "openai_chat_stream.sse").read_bytes()
# the bench's content event: no "usage" in it, so it may pass unread
PLAIN = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"c":"Hi"}}]}\n\n'


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([STREAM, RECORDED, PLAIN * 30, USAGE_EVENT, PLAIN[:-1], b"\n", b"\r"]),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0, max_value=20_000), max_size=4),
    st.booleans(),
)
def test_recorded_streams_joined_in_large_chunks_give_the_same_output(
    parts: list[bytes], eol: bytes, cuts: list[int], small: bool
) -> None:
    """Recorded streams end to end, cut in a few large chunks (each starting mid-event,
    mostly): byte for byte what the plain reference keeps, and the same chunks dropped."""
    stream = _eol(b"".join(parts), eol)
    limit = 300 if small else 1 << 20
    whole, cut = UsageChunkFilter(limit), UsageChunkFilter(limit)
    assert _feed_all(_split(stream, cuts), cut) == _reference(stream, limit)
    assert _feed_all([stream], whole) == _reference(stream, limit)
    assert (cut.dropped_events, cut.dropped_usage) == (whole.dropped_events, whole.dropped_usage)


def test_a_large_chunk_starting_mid_event_passes_unread() -> None:
    body = PLAIN * 300 + USAGE_EVENT + PLAIN * 3 + DONE
    at, end = len(PLAIN) // 2, len(body) - 5
    f = UsageChunkFilter()
    assert _feed_all([body[:at], body[at:end], body[end:]], f) == PLAIN * 303 + DONE
    assert f.dropped_usage == USAGE
    # read: the rest of the event the first piece left open, and from the usage chunk on
    assert f.walked_bytes == len(PLAIN) + len(USAGE_EVENT) + 3 * len(PLAIN) + len(DONE)


def test_content_chunks_saying_usage_null_pass_unread() -> None:
    null = b'data: {"choices":[{"delta":{"content":"x"}}],"usage":null}\n\n'
    body = null * 200 + USAGE_EVENT + null + DONE
    f = UsageChunkFilter()
    assert _feed_all([body], f) == null * 201 + DONE
    assert f.dropped_usage == USAGE
    assert f.walked_bytes == len(USAGE_EVENT) + len(null) + len(DONE)
