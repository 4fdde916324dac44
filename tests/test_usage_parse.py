"""aroutd.usage.parse: recorded answers (a table), any chunking and line ending (hypothesis),
streams cut short, the SSE rules, bad values, garbage, and the bounds on what is held."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import fields
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.usage.parse import MAX_TOKENS, ProviderKind, Usage, UsageMeter

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
SSE = b"text/event-stream"
JSON = b"application/json"
KINDS: tuple[ProviderKind, ...] = ("openai", "anthropic", "gemini")
FIELDS = [f.name for f in fields(Usage)]

# each recorded answer (tests/fixtures/usage/SOURCES.md says where its shape comes from)
CASES: dict[str, tuple[ProviderKind, Usage]] = {
    "openai_chat_stream.sse": (
        "openai",
        Usage(input_tokens=2006, output_tokens=300, cached_input_tokens=1920, reasoning_tokens=192),
    ),
    "openai_chat.json": (
        "openai",
        Usage(input_tokens=1117, output_tokens=310, cached_input_tokens=1024, reasoning_tokens=256),
    ),
    "openai_embeddings.json": ("openai", Usage(input_tokens=8)),
    "openai_responses.json": (
        "openai",
        Usage(input_tokens=1536, output_tokens=420, cached_input_tokens=1280, reasoning_tokens=320),
    ),
    "openai_responses_stream.sse": (
        "openai",
        Usage(input_tokens=1536, output_tokens=420, cached_input_tokens=1280, reasoning_tokens=320),
    ),
    "anthropic.json": (
        "anthropic",
        Usage(
            input_tokens=25 + 3072 + 1024,
            output_tokens=410,
            cached_input_tokens=3072,
            cache_write_tokens=1024,
        ),
    ),
    "anthropic_stream.sse": (
        "anthropic",
        Usage(
            input_tokens=12 + 2048 + 248,
            output_tokens=503,
            cached_input_tokens=2048,
            cache_write_tokens=248,
            reasoning_tokens=301,
        ),
    ),
    "anthropic_stream_cumulative.sse": (
        "anthropic",
        Usage(input_tokens=10682 + 2048, output_tokens=510, cached_input_tokens=2048),
    ),
    "gemini.json": ("gemini", Usage(input_tokens=9, output_tokens=12 + 25, reasoning_tokens=25)),
    "gemini_stream.sse": (
        "gemini",
        Usage(
            input_tokens=4410,
            output_tokens=211 + 517,
            cached_input_tokens=4096,
            reasoning_tokens=517,
        ),
    ),
    "gemini_array.json": ("gemini", Usage(input_tokens=11, output_tokens=8)),
}
SSE_CASES = sorted(name for name in CASES if name.endswith(".sse"))
# the anthropic_stream.sse message_start alone: input and cache counts, output_tokens 1
ANTHROPIC_STARTED = Usage(
    input_tokens=2308, output_tokens=1, cached_input_tokens=2048, cache_write_tokens=248
)


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def content_type(name: str) -> bytes:
    return SSE if name.endswith(".sse") else JSON


def metered(
    kind: ProviderKind,
    chunks: Iterable[bytes],
    ctype: bytes | None = SSE,
    *,
    peek: bool = False,
    max_event_bytes: int = 1 << 20,
) -> Usage | None:
    """The usage a fresh meter reports after ``chunks`` (``peek``: asked after each one too)."""
    meter = UsageMeter(kind, content_type=ctype, max_event_bytes=max_event_bytes)
    for chunk in chunks:
        meter.feed(chunk)
        if peek:
            meter.usage()
    return meter.usage()


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in pairwise(points)]


def line_endings(data: bytes) -> dict[str, bytes]:
    lf = data.replace(b"\r\n", b"\n")
    return {"lf": lf, "crlf": lf.replace(b"\n", b"\r\n"), "cr": lf.replace(b"\n", b"\r")}


def cut_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=40)


def sse(*payloads: object) -> bytes:
    """An event stream with one ``data:`` event per payload (bytes as they are, else JSON)."""
    out = b""
    for p in payloads:
        text = p if isinstance(p, bytes) else json.dumps(p, separators=(",", ":")).encode()
        out += b"data: " + text + b"\n\n"
    return out


# -- the recorded answers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_recorded_answer_fed_whole(name: str) -> None:
    kind, expected = CASES[name]
    assert metered(kind, [load(name)], content_type(name)) == expected


def test_every_fixture_is_in_the_table_and_in_sources() -> None:
    files = {p.name for p in FIXTURES.iterdir()} - {"SOURCES.md"}
    assert files == set(CASES)
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    assert [name for name in sorted(files) if f"`{name}`" not in sources] == []


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_split_gives_the_same_usage(name: str, data: st.DataObject) -> None:
    kind, expected = CASES[name]
    body = load(name)
    cuts = data.draw(cut_points(body))
    peek = data.draw(st.booleans())
    assert metered(kind, split(body, cuts), content_type(name), peek=peek) == expected


@pytest.mark.parametrize("name", SSE_CASES)
@pytest.mark.parametrize("ending", ["lf", "crlf", "cr"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_line_ending_and_split_gives_the_same_usage(
    name: str, ending: str, data: st.DataObject
) -> None:
    kind, expected = CASES[name]
    body = line_endings(load(name))[ending]
    assert metered(kind, [body]) == expected
    assert metered(kind, split(body, data.draw(cut_points(body)))) == expected


@pytest.mark.parametrize("name", SSE_CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_skipping_long_events_does_not_depend_on_the_split(name: str, data: st.DataObject) -> None:
    """With a small max_event_bytes some events are skipped: the same ones for any chunking."""
    kind, _ = CASES[name]
    body = line_endings(load(name))[data.draw(st.sampled_from(["lf", "crlf", "cr"]))]
    limit = data.draw(st.integers(1, 1500))
    whole = metered(kind, [body], max_event_bytes=limit)
    chunks = split(body, data.draw(cut_points(body)))
    assert metered(kind, chunks, max_event_bytes=limit) == whole


# -- cut short --------------------------------------------------------------------------------


def test_an_anthropic_stream_cut_after_message_start_reports_the_input() -> None:
    body = load("anthropic_stream.sse")
    end = body.index(b"\n\n") + 2  # message_start is the first event
    assert metered("anthropic", [body[:end]]) == ANTHROPIC_STARTED
    assert metered("anthropic", [body[: end - 1]]) is None  # its blank line not yet seen


def test_an_openai_stream_cut_before_its_usage_chunk_reports_none() -> None:
    body = load("openai_chat_stream.sse")
    start = body.rindex(b"data: ", 0, body.index(b'"choices":[]'))
    assert metered("openai", [body[:start]]) is None
    line_end = body.index(b"\n", start) + 1
    assert metered("openai", [body[:line_end]]) is None  # the event is not over yet
    assert metered("openai", [body[: line_end + 1]]) == CASES["openai_chat_stream.sse"][1]


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("openai_chat_stream.sse", [None]),
        ("openai_responses_stream.sse", [None]),
        ("anthropic_stream.sse", [None, ANTHROPIC_STARTED]),
    ],
)
def test_every_prefix_reports_nothing_or_what_came_so_far(
    name: str, allowed: list[Usage | None]
) -> None:
    kind, expected = CASES[name]
    body = load(name)
    meter = UsageMeter(kind, content_type=SSE)
    seen = []
    for i in range(len(body)):
        meter.feed(body[i : i + 1])
        seen.append(meter.usage())
    assert set(seen) <= {*allowed, expected}
    assert seen[-1] == expected
    first = seen.index(expected)
    assert all(u == expected for u in seen[first:])  # once reported, it stays


# -- the SSE rules ----------------------------------------------------------------------------

U1 = {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}
U1_USAGE = Usage(input_tokens=3, output_tokens=4)
D = json.dumps(U1, separators=(",", ":")).encode()  # {"usage":{"prompt_tokens":3,...}}


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data: " + D + b"\n\n", U1_USAGE, id="plain"),
        pytest.param(b"data:" + D + b"\n\n", U1_USAGE, id="no-space"),
        pytest.param(b"data:  " + D + b"\n\n", U1_USAGE, id="two-spaces"),
        pytest.param(b"data: " + D.replace(b",", b",\ndata: ") + b"\n\n", U1_USAGE, id="lines"),
        pytest.param(
            b": usage\nevent: x\nid: 7\nretry: 1\ndata: " + D + b"\n\n", U1_USAGE, id="fields"
        ),
        pytest.param(b"\xef\xbb\xbfdata: " + D + b"\n\n", U1_USAGE, id="bom"),
        pytest.param(b"\n\n\ndata: " + D + b"\r\n\r\n", U1_USAGE, id="blank-lines-first"),
        pytest.param(b"data\ndata: " + D + b"\n\n", U1_USAGE, id="bare-data-is-an-empty-line"),
        pytest.param(b"data: " + D + b"\n", None, id="no-blank-line"),
        pytest.param(b"data: " + D, None, id="no-line-end"),
        pytest.param(b"dataX: " + D + b"\n\n", None, id="other-field-name"),
        pytest.param(b"Data: " + D + b"\n\n", None, id="field-names-are-case-sensitive"),
        pytest.param(b" data: " + D + b"\n\n", None, id="leading-space"),
        pytest.param(b"data: " + D + b"\n: the event goes on\n", None, id="comment-is-no-end"),
        pytest.param(b"data: [DONE]\n\n", None, id="done"),
    ],
)
def test_sse_rules(stream: bytes, expected: Usage | None) -> None:
    crlf = stream.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    for body in (stream, crlf):
        assert metered("openai", [body]) == expected
        assert metered("openai", [bytes([b]) for b in body]) == expected
        for i in range(len(body) + 1):  # every cut in two, a CRLF's CR and LF apart too
            assert metered("openai", [body[:i], body[i:]]) == expected


def test_a_long_event_is_skipped_and_the_next_one_still_counts() -> None:
    long_event = b"data: " + b"x" * 3000 + b"usage\n" + sse(U1)  # same event: skipped whole
    meter = UsageMeter("openai", content_type=SSE, max_event_bytes=1000)
    for chunk in split(long_event, range(0, len(long_event), 100)):
        meter.feed(chunk)
        assert meter.held_bytes <= 1000
    assert meter.usage() is None
    meter.feed(sse(U1))
    assert meter.usage() == U1_USAGE


def test_a_two_mib_event_is_not_held() -> None:
    meter = UsageMeter("openai", content_type=SSE)
    meter.feed(b'data: {"usage": "')
    for _ in range(32):
        meter.feed(b"u" * 65536)
        assert meter.held_bytes <= 1 << 20
    meter.feed(b'"}\n\n' + sse({"usage": {"prompt_tokens": 5}}))
    assert meter.usage() == Usage(input_tokens=5)
    assert meter.held_bytes == 0


@pytest.mark.parametrize(
    ("ctype", "is_sse"),
    [
        (b"text/event-stream", True),
        (b"Text/Event-Stream; charset=utf-8", True),
        (b"application/json", False),
        (b"application/json; charset=utf-8", False),
        (b"text/plain", False),
        (None, False),
    ],
)
def test_the_content_type_picks_the_reader(ctype: bytes | None, is_sse: bool) -> None:
    as_sse, as_json = sse(U1), json.dumps(U1).encode()
    assert metered("openai", [as_sse], ctype) == (U1_USAGE if is_sse else None)
    assert metered("openai", [as_json], ctype) == (None if is_sse else U1_USAGE)


# -- per provider: what counts, and the last report winning -----------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param({"prompt_tokens": 7}, Usage(input_tokens=7), id="only-prompt"),
        pytest.param(
            {"prompt_tokens": True, "completion_tokens": 2}, Usage(output_tokens=2), id="bool"
        ),
        pytest.param(
            {"prompt_tokens": -1, "completion_tokens": 2}, Usage(output_tokens=2), id="negative"
        ),
        pytest.param(
            {"prompt_tokens": 1.0, "completion_tokens": 2}, Usage(output_tokens=2), id="float"
        ),
        pytest.param(
            {"prompt_tokens": "1", "completion_tokens": 2}, Usage(output_tokens=2), id="string"
        ),
        pytest.param(
            {"prompt_tokens": MAX_TOKENS + 1, "completion_tokens": 2},
            Usage(output_tokens=2),
            id="huge",
        ),
        pytest.param({"prompt_tokens": MAX_TOKENS}, Usage(input_tokens=MAX_TOKENS), id="largest"),
        pytest.param(
            {"prompt_tokens": 10**40, "completion_tokens": 2},
            Usage(output_tokens=2),
            id="forty-digits",
        ),
        pytest.param(
            {"prompt_tokens": 2, "prompt_tokens_details": 5},
            Usage(input_tokens=2),
            id="details-not-object",
        ),
        pytest.param(
            {"prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": None}},
            Usage(input_tokens=2),
            id="cached-null",
        ),
        pytest.param({"total_tokens": 9}, None, id="no-count"),
        pytest.param({}, None, id="empty"),
        pytest.param([1, 2], None, id="list"),
        pytest.param("12", None, id="string-usage"),
        pytest.param(None, None, id="null"),
    ],
)
def test_openai_counts_that_count(usage: object, expected: Usage | None) -> None:
    body = json.dumps({"usage": usage}).encode()
    assert metered("openai", [body], JSON) == expected
    assert metered("openai", [sse({"usage": usage})]) == expected


def test_a_5000_digit_count_beside_good_ones_keeps_the_body_parseable() -> None:
    body = b'{"usage":{"prompt_tokens":' + b"9" * 5000 + b',"completion_tokens":2}}'
    assert metered("openai", [body], JSON) == Usage(output_tokens=2)


def test_openai_the_last_usage_wins_and_a_bad_one_does_not_erase_it() -> None:
    stream = sse(
        {"usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        {"usage": {"prompt_tokens": 5, "completion_tokens": 6}},
        {"usage": {"prompt_tokens": "x"}},
        {"usage": None},
    )
    assert metered("openai", [stream]) == Usage(input_tokens=5, output_tokens=6)


@pytest.mark.parametrize("event", ["response.completed", "response.incomplete", "response.failed"])
def test_responses_api_final_events_carry_usage(event: str) -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    stream = sse({"type": event, "response": {"status": "x", "usage": usage}})
    assert metered("openai", [stream]) == Usage(
        input_tokens=10, output_tokens=2, reasoning_tokens=1
    )


def test_responses_api_other_events_do_not() -> None:
    usage = {"input_tokens": 10, "output_tokens": 2}
    stream = sse({"type": "response.output_item.done", "response": {"usage": usage}})
    assert metered("openai", [stream]) is None


def test_anthropic_message_delta_replaces_each_count_it_carries() -> None:
    start = {
        "type": "message_start",
        "message": {
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}
        },
    }
    deltas = [
        {"type": "message_delta", "usage": {"output_tokens": 30}},
        {"type": "message_delta", "usage": {"output_tokens": 50, "input_tokens": 12}},
        {"type": "message_delta", "usage": {"output_tokens": "x", "cache_read_input_tokens": -1}},
    ]
    expected = Usage(input_tokens=12 + 4, output_tokens=50, cached_input_tokens=4)
    assert metered("anthropic", [sse(start, *deltas)]) == expected
    assert metered("anthropic", [sse(start, deltas[0])]) == Usage(
        input_tokens=14, output_tokens=30, cached_input_tokens=4
    )


def test_anthropic_message_start_without_usage_reports_nothing() -> None:
    stream = sse({"type": "message_start", "message": {"usage": None}}, {"type": "ping"})
    assert metered("anthropic", [stream]) is None
    assert metered("anthropic", [sse({"type": "message_start", "message": []})]) is None


def test_anthropic_errors_and_count_tokens_are_no_usage() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert metered("anthropic", [json.dumps(error).encode()], JSON) is None
    assert metered("anthropic", [sse(error)]) is None
    assert metered("anthropic", [b'{"input_tokens": 40}'], JSON) is None


def test_gemini_the_last_usage_metadata_wins_whole() -> None:
    first = {
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 9}
    }
    last = {"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}}
    no_count = {"usageMetadata": {"trafficType": "ON_DEMAND"}}
    expected = Usage(input_tokens=5, output_tokens=3)
    assert metered("gemini", [sse(first, last, no_count)]) == expected
    assert metered("gemini", [json.dumps([first, last, no_count, {}]).encode()], JSON) == expected
    assert metered("gemini", [json.dumps([first, 7, [last]]).encode()], JSON) == Usage(
        input_tokens=5, output_tokens=10, reasoning_tokens=9
    )
    assert metered("gemini", [b"[]"], JSON) is None


def test_the_other_kinds_usage_is_not_read() -> None:
    openai_body = load("openai_chat.json")
    assert metered("gemini", [openai_body], JSON) is None
    assert metered("openai", [load("gemini.json")], JSON) is None
    assert metered("gemini", [load("anthropic_stream.sse")]) is None


def test_usage_total() -> None:
    assert CASES["anthropic_stream.sse"][1].total() == 2308 + 503
    assert Usage().total() == 0


# -- JSON bodies ------------------------------------------------------------------------------


def test_a_json_body_is_parsed_once_when_asked_and_again_after_more_bytes() -> None:
    body = load("openai_chat.json")
    meter = UsageMeter("openai", content_type=JSON)
    meter.feed(body[:100])
    assert meter.usage() is None  # not a whole document yet
    meter.feed(body[100:])
    assert meter.usage() == CASES["openai_chat.json"][1]
    assert meter.usage() == CASES["openai_chat.json"][1]
    assert meter.parsed_events == 2


def test_a_json_body_beyond_the_cap_reports_none_without_holding_it() -> None:
    cap, chunk = 1 << 20, 64 * 1024
    meter = UsageMeter("openai", content_type=JSON)
    assert meter.held_bytes == 0
    meter.feed(b'{"data": "')
    for _ in range(5 * 16):  # 5 MiB
        meter.feed(b"e" * chunk)
        assert meter.held_bytes <= cap
    meter.feed(b'", "usage": {"prompt_tokens": 8, "total_tokens": 8}}')
    assert meter.usage() is None
    assert meter.held_bytes == 0


def test_a_json_body_at_the_cap_is_still_read() -> None:
    body = json.dumps({"usage": {"prompt_tokens": 8}, "pad": "x" * 1000}).encode()
    meter = UsageMeter("openai", content_type=JSON, max_json_bytes=len(body))
    meter.feed(body)
    assert meter.usage() == Usage(input_tokens=8)
    meter.feed(b" ")
    assert meter.usage() is None


# -- garbage never raises ---------------------------------------------------------------------


def reference_events(body: bytes) -> list[bytes]:
    """The data of each event of ``body``, the SSE spec read naively (the whole body at once)."""
    body = body.removeprefix(b"\xef\xbb\xbf")
    events: list[bytes] = []
    data: list[bytes] = []
    for line in re.split(rb"\r\n|\r|\n", body)[:-1]:  # the last piece has no line end
        if not line:
            if data:
                events.append(b"\n".join(data))
            data = []
        elif line == b"data":
            data.append(b"")
        elif line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
    return events


SOUP = st.lists(
    st.sampled_from(
        [
            b"data:",
            b"data: ",
            b"data",
            b":",
            b"event: x",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"\xef\xbb\xbf",
            b"\xff",
            b"usage",
            b"usageMetadata",
            b'"usage":null',
            b'{"usage":',
            b'{"usageMetadata":',
            b'{"type":"message_start","message":{"usage":',
            b'{"type":"message_delta","usage":',
            b'{"type":"response.completed","response":{"usage":',
            b'{"prompt_tokens":',
            b'{"input_tokens":',
            b'"output_tokens":',
            b'"cache_read_input_tokens":',
            b'"promptTokenCount":',
            b'"candidatesTokenCount":',
            b"1",
            b"20",
            b"-3",
            b"1e3",
            b"true",
            b"null",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b'"',
            b"[DONE]",
        ]
    ),
    max_size=60,
).map(b"".join)

# streams built of events: the fixtures' payloads and small usage documents as data lines
# (some split over two data lines), other fields, comments and soup, any line endings
PAYLOADS = sorted(
    {p for name in SSE_CASES for p in reference_events(load(name))}
    | {
        json.dumps(d, separators=(",", ":")).encode()
        for d in [
            U1,
            {"usage": {"input_tokens": 2, "output_tokens": 1}},
            {"type": "message_delta", "usage": {"output_tokens": 9, "input_tokens": 4}},
            {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}},
        ]
    }
)
WITH_USAGE = [p for p in PAYLOADS if b"usage" in p and b'usage":null' not in p]


def _data_lines(payload: bytes, cut: int) -> list[bytes]:
    """``payload`` as one data line, or as two cut after its ``cut``-th comma."""
    commas = [i for i, c in enumerate(payload) if c == 0x2C]
    if not commas or cut == 0:
        return [b"data: " + payload]
    at = commas[cut % len(commas)] + 1
    return [b"data: " + payload[:at], b"data:" + payload[at:]]


LINES = st.one_of(
    st.builds(
        _data_lines, st.sampled_from(PAYLOADS) | st.sampled_from(WITH_USAGE), st.integers(0, 50)
    ),
    st.sampled_from(
        [b": ping", b"event: message_delta", b"id: 1", b"retry: 5", b"data", b"dataX: 1"]
    ).map(lambda line: [line]),
    SOUP.map(lambda soup: [soup.replace(b"\r", b"").replace(b"\n", b"")]),
)
EVENTS = st.lists(LINES, min_size=1, max_size=3).map(lambda lines: [x for ls in lines for x in ls])


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    eols = draw(st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=1, max_size=3))
    out = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    for k, event in enumerate(draw(st.lists(EVENTS, max_size=8))):
        for i, line in enumerate([*event, b""]):  # b"": the blank line ending the event
            out += line + eols[(k + i) % len(eols)]
    return out[: len(out) - draw(st.integers(0, 3))]  # maybe cut short


STREAMS = _streams()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ctype", [SSE, JSON])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_garbage_never_raises_and_any_split_agrees(
    kind: ProviderKind, ctype: bytes, data: st.DataObject
) -> None:
    body = data.draw(st.binary(max_size=300) | SOUP | STREAMS)
    whole = metered(kind, [body], ctype)
    assert metered(kind, split(body, data.draw(cut_points(body))), ctype, peek=True) == whole
    assert whole is None or all(0 <= getattr(whole, f) <= 3 * MAX_TOKENS for f in FIELDS)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None)
@given(body=SOUP | STREAMS)
def test_events_are_split_as_the_sse_spec_says(kind: ProviderKind, body: bytes) -> None:
    """The meter fed any soup agrees with one fed the same events written out plainly."""
    events = reference_events(body)
    plain = b"".join(b"data: " + e.replace(b"\n", b"\ndata: ") + b"\n\n" for e in events)
    assert metered(kind, [body]) == metered(kind, [plain])


KEYS = st.sampled_from(
    [
        "usage",
        "usageMetadata",
        "type",
        "message",
        "response",
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "cached_tokens",
        "completion_tokens_details",
        "reasoning_tokens",
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "thinking_tokens",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "cachedContentTokenCount",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from(["message_start", "message_delta", "response.completed"])
)


def _containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(children, max_size=4) | st.dictionaries(
        KEYS | st.text(max_size=3), children, max_size=5
    )


JSON_VALUES: st.SearchStrategy[object] = st.recursive(SCALARS, _containers, max_leaves=30)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_any_json_value_never_raises(kind: ProviderKind, value: object) -> None:
    text = json.dumps(value).encode()
    for found in (metered(kind, [text], JSON), metered(kind, [sse(text)])):
        assert found is None or all(
            type(getattr(found, f)) is int and 0 <= getattr(found, f) <= 3 * MAX_TOKENS
            for f in FIELDS
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"[" * 100_000, id="deep-list"),
        pytest.param(b'{"usage":' * 50_000, id="deep-usage"),
        pytest.param(b'{"usageMetadata":' * 50_000, id="deep-usage-metadata"),
        pytest.param(b'{"usage":{"prompt_tokens":1,"x":"\xff\xfe"}}', id="invalid-utf8"),
        pytest.param(b'{"usage":{"prompt_tokens":NaN}}', id="nan"),
        pytest.param(b'\xef\xbb\xbf{"usage":{"prompt_tokens":1}} trailing', id="trailing"),
    ],
)
def test_hostile_bodies_never_raise_and_the_meter_keeps_working(
    kind: ProviderKind, garbage: bytes
) -> None:
    assert metered(kind, [garbage], JSON) is None
    good = {
        "openai": {"usage": {"prompt_tokens": 1}},
        "anthropic": {"usage": {"input_tokens": 1}},
        "gemini": {"usageMetadata": {"promptTokenCount": 1}},
    }[kind]
    assert metered(kind, [sse(garbage, good)]) == Usage(input_tokens=1)


# -- metering stays cheap ---------------------------------------------------------------------


def test_ten_thousand_content_events_are_not_parsed() -> None:
    chunk = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "hi"}}],
    }
    with_null = {**chunk, "usage": None}
    meter = UsageMeter("openai", content_type=SSE)
    for i in range(10_000):
        meter.feed(sse(chunk if i % 2 else with_null))
    assert meter.parsed_events == 0
    assert meter.usage() is None
    meter.feed(sse({**chunk, "choices": [], "usage": {"prompt_tokens": 9}}))
    assert meter.parsed_events == 1
    assert meter.usage() == Usage(input_tokens=9)
    assert meter.held_bytes == 0


def test_gemini_content_events_without_usage_metadata_are_not_parsed() -> None:
    meter = UsageMeter("gemini", content_type=SSE)
    event = sse({"candidates": [{"content": {"parts": [{"text": "usage is not usageMetadata"}]}}]})
    for _ in range(1000):
        meter.feed(event.replace(b"usageMetadata", b"usage"))
    assert meter.parsed_events == 0


@pytest.mark.parametrize(
    ("name", "parsed"),
    [(n, 1) for n in sorted(CASES) if n.endswith(".json")]
    + [
        ("openai_chat_stream.sse", 2),  # the usage chunk, and the delta whose text says " usage"
        ("openai_responses_stream.sse", 1),  # created and in_progress have only "usage":null
        ("anthropic_stream.sse", 3),  # message_start, message_delta, and the thinking about usage
        ("anthropic_stream_cumulative.sse", 2),
        ("gemini_stream.sse", 3),  # every Gemini chunk carries usageMetadata
    ],
)
def test_only_events_that_may_hold_usage_are_parsed(name: str, parsed: int) -> None:
    kind, _ = CASES[name]
    meter = UsageMeter(kind, content_type=content_type(name))
    meter.feed(load(name))
    meter.usage()
    assert meter.parsed_events == parsed


# the bench's content event: no usage key, so the fast path may skip it unread
CONTENT = sse({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"c": "hi"}}]})


def _meter(kind: ProviderKind, chunks: Iterable[bytes], max_event_bytes: int) -> UsageMeter:
    meter = UsageMeter(kind, content_type=SSE, max_event_bytes=max_event_bytes)
    for chunk in chunks:
        meter.feed(chunk)
    return meter


@pytest.mark.parametrize("name", SSE_CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_recorded_streams_joined_in_large_chunks_give_the_same_usage(
    name: str, data: st.DataObject
) -> None:
    """Recorded streams end to end, with runs of content events, cut in a few large chunks
    (each starting mid-event, mostly): the same usage and parses as the body fed whole."""
    kind, _ = CASES[name]
    parts = st.sampled_from([load(name), CONTENT * 30, CONTENT[:-1], b"\n"])
    joined = b"".join(data.draw(st.lists(parts, min_size=1, max_size=8)))
    body = line_endings(joined)[data.draw(st.sampled_from(["lf", "lf", "crlf", "cr"]))]
    limit = data.draw(st.sampled_from([1 << 20, 200, 60]))
    whole = _meter(kind, [body], limit)
    cut = _meter(
        kind, split(body, data.draw(st.lists(st.integers(0, len(body)), max_size=4))), limit
    )
    assert (cut.usage(), cut.parsed_events) == (whole.usage(), whole.parsed_events)


def test_a_large_chunk_starting_mid_event_is_not_read_line_by_line() -> None:
    usage = sse({"choices": [], "usage": {"prompt_tokens": 9}})
    body = CONTENT * 300 + usage + CONTENT * 3
    at, end = len(CONTENT) // 2, len(body) - 5
    meter = _meter("openai", [body[:at], body[at:end], body[end:]], 1 << 20)
    assert meter.usage() == Usage(input_tokens=9)
    assert meter.parsed_events == 1
    # read: the first piece, the rest of the event it left open, and from the usage event on
    assert meter.walked_bytes == at + (len(CONTENT) - at) + len(usage) + 3 * len(CONTENT)
    meter = _meter("openai", [body[:at], body[at:-at], body[-at:]], 1 << 20)
    assert meter.usage() == Usage(input_tokens=9)


def test_a_line_dropped_at_a_chunk_end_leaves_its_event_open() -> None:
    """A line too long for the event, cut by a chunk's end: the next chunk starts mid-event
    (its blank lines do not make it skippable), and the event after it still counts."""
    chunks = [b"\n\n", b"X" * 100, b"\n\ndata: " + D, b"\n\n"]
    assert metered("openai", [b"".join(chunks)], max_event_bytes=80) == U1_USAGE
    assert metered("openai", chunks, max_event_bytes=80) == U1_USAGE


def test_content_events_saying_usage_null_are_skipped_unread() -> None:
    """An OpenAI stream that asked for usage says "usage":null in every content chunk:
    such events carry no usage and need no reading (sse_skip.first_live)."""
    null = sse({"choices": [{"delta": {"content": "x"}}], "usage": None})
    spaced = null.replace(b'"usage":null', b'"usage": null')
    quoted = sse({"choices": [{"delta": {"content": '"usage":null'}}], "usage": None})
    usage = sse({"choices": [], "usage": {"prompt_tokens": 4}})
    body = (null + spaced) * 100 + quoted + usage
    meter = _meter("openai", [body], 1 << 20)
    assert meter.usage() == Usage(input_tokens=4)
    # read: the stream's first event (a BOM may open a stream), then only from the event
    # whose text quotes the key (escaped, so not the key: it is read) on
    assert meter.walked_bytes == len(null) + len(quoted) + len(usage)
