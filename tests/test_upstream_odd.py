"""aroutd against an odd, broken or hostile upstream (SPEC §6 "Forwarding", §13).

The upstream is ``tests/oddupstream.py``: raw scripted bytes, no HTTP library.
The daemon runs in-process on loopback (``support.make_config`` + ``serve``);
every client is a real h11 client whose reads are bounded by ``trio.fail_after``,
so a hang fails the test.

Each case asserts exactly what the client gets (status and body; or a 502
envelope; or a head followed by a cut connection: no final chunk, or fewer
bytes than the Content-Length), that the upstream saw the request once (a
retry is allowed only before any response byte), and then that the case left
no trace: ``GET /healthz`` answers 200 on a fresh connection and a second
request, with another API key, gets its own answer. That last check catches
pool poisoning: an upstream connection pooled with stray bytes buffered would
hand them to the next request as its answer. Where SPEC §6 says a connection
must not be pooled, the second request must reach the upstream on a new one.

Choices where the contract leaves room, stated once here:
- status 999 is relayed (h11 accepts any 3-digit final status 200-999);
  status 99 (and 099) is a 502 because h11 refuses it;
- 1xx answers before the final one are skipped by the client here, so relaying
  them (or not) is the daemon's choice; 101 without an upgrade is a 502;
- an answer with both Content-Length and Transfer-Encoding: chunked is relayed
  chunked without its Content-Length, or is a 502 (nothing relayed yet);
- an upstream head over 64 KiB is a 502 (h11 keeps at most 16 KiB pending);
- close-delimited upstream bodies (HTTP/1.0, or no length and ``Connection:
  close``) reach the client framed (chunked or Content-Length), in full.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest

from .oddproxy import (
    CHAT,
    ERR_504,
    HELLO,
    HELLO_CHUNKED,
    POISON,
    SWEEP_CHUNKED,
    SWEEP_LENGTH,
    TE,
    X100,
    Got,
    Hang,
    ask,
    assert_502,
    assert_cut,
    assert_forwarded_once,
    assert_relayed,
    assert_unharmed,
    h11_events,
    head,
    played,
    proxy,
    warm_pool,
)
from .oddupstream import OddUpstream, Script, answer, chunked

# -- the table of odd answers -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    status: int  # 502 / 504: our envelope
    body: bytes = b""
    cut: bool = False  # the head is relayed, then the response is cut
    or_502: bool = False  # a 502 envelope is right too (nothing relayed yet)
    no_length: bool = False  # relayed without the upstream's Content-Length
    reuse: bool | None = None  # the next request goes on the same upstream connection


HELLO_WORLD_CHUNKS = chunked(b"hello", b" ", b"world")
OK_HELLO = Expect(status=200, body=b"hello", reuse=True)
BAD = Expect(status=502, reuse=False)
NOT_POOLED_HELLO = Expect(status=200, body=b"hello", reuse=False)

CASES = [
    pytest.param(Script(answer=head(b"100 Continue") + HELLO), OK_HELLO, id="100-then-200"),
    pytest.param(
        Script(answer=head(b"103 Early Hints", b"Link: </a.css>; rel=preload") + HELLO),
        OK_HELLO,
        id="103-then-200",
    ),
    pytest.param(
        Script(answer=head(b"100 Continue") + head(b"103 Early Hints") + HELLO),
        OK_HELLO,
        id="100-103-then-200",
    ),
    pytest.param(
        # the upstream now speaks another protocol: silence here, the connection held
        Script(
            answer=head(b"101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade")
        ),
        BAD,
        id="101-without-upgrade",
    ),
    pytest.param(
        Script(answer=head(b"204 No Content"), stray=b"a body after a 204"),
        Expect(status=204, reuse=False),
        id="204-with-body",
    ),
    pytest.param(
        Script(answer=head(b"204 No Content", b"Content-Length: 11"), stray=b"hello world"),
        Expect(status=204, reuse=False),
        id="204-with-content-length-and-body",
    ),
    pytest.param(
        Script(answer=head(b"204 No Content"), stray=POISON),
        Expect(status=204, reuse=False),
        id="204-then-smuggled-answer",
    ),
    pytest.param(
        Script(answer=head(b"304 Not Modified", b'ETag: "x"'), stray=POISON),
        Expect(status=304, reuse=False),
        id="304-then-smuggled-answer",
    ),
    pytest.param(
        Script(answer=head(b"304 Not Modified", b"Content-Length: 5"), stray=b"hello"),
        Expect(status=304, reuse=False),
        id="304-with-body",
    ),
    pytest.param(
        Script(answer=HELLO, stray=b"WORLD"),  # Content-Length 5, 10 body bytes
        NOT_POOLED_HELLO,
        id="content-length-5-body-10",
    ),
    pytest.param(
        Script(answer=HELLO, stray=POISON), NOT_POOLED_HELLO, id="content-length-then-smuggled"
    ),
    pytest.param(
        Script(answer=HELLO, stray=POISON, stray_after_s=0.03),
        NOT_POOLED_HELLO,
        id="late-stray-answer-after-pooling",
    ),
    pytest.param(
        Script(answer=HELLO_CHUNKED, stray=b"junk"), NOT_POOLED_HELLO, id="bytes-after-last-chunk"
    ),
    pytest.param(
        Script(answer=HELLO_CHUNKED, stray=POISON), NOT_POOLED_HELLO, id="answer-after-last-chunk"
    ),
    pytest.param(
        Script(
            answer=b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", keep_alive=False
        ),
        NOT_POOLED_HELLO,
        id="http10-close-delimited",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Connection: close") + b"hello", keep_alive=False),
        NOT_POOLED_HELLO,
        id="http11-close-delimited",
    ),
    pytest.param(
        Script(answer=answer(b"odd", status=b"999 Odd")),
        Expect(status=999, body=b"odd", reuse=True),
        id="status-999-relayed",
    ),
    pytest.param(Script(answer=answer(b"odd", status=b"99 Odd")), BAD, id="status-99"),
    pytest.param(Script(answer=answer(b"odd", status=b"099 Odd")), BAD, id="status-099"),
    pytest.param(Script(answer=answer(b"odd", status=b"2000 Odd")), BAD, id="status-2000"),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 3", TE) + HELLO_WORLD_CHUNKS),
        Expect(status=200, body=b"hello world", or_502=True, no_length=True),
        id="content-length-shorter-and-chunked",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", TE, b"Content-Length: 500") + HELLO_WORLD_CHUNKS),
        Expect(status=200, body=b"hello world", or_502=True, no_length=True),
        id="chunked-and-content-length-longer",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 11", TE) + HELLO_WORLD_CHUNKS),
        Expect(status=200, body=b"hello world", or_502=True, no_length=True),
        id="content-length-equal-and-chunked",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 5", b"Content-Length: 6") + b"hello!"),
        BAD,
        id="two-content-lengths",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 5, 6") + b"hello!"),
        BAD,
        id="content-length-list",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 5", b"Content-Length: 5") + b"hello"),
        OK_HELLO,
        id="same-content-length-twice",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Transfer-Encoding: gzip") + b"x"), BAD, id="te-gzip"
    ),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: -1") + b"x"), BAD, id="content-length-neg"
    ),
    pytest.param(
        Script(
            answer=head(b"200 OK", TE, b"Trailer: X-Usage")
            + chunked(b"hello", trailers=(b"X-Usage: 12", b"X-Other: y"))
        ),
        OK_HELLO,
        id="chunked-with-trailers",
    ),
    pytest.param(
        Script(
            answer=head(b"200 OK", b"X-Huge: " + b"a" * 70_000, b"Content-Length: 5") + b"hello"
        ),
        BAD,
        id="head-over-64k",
    ),
    pytest.param(Script(answer=HELLO, piece_bytes=1), OK_HELLO, id="byte-by-byte"),
    pytest.param(Script(answer=HELLO_CHUNKED, piece_bytes=1), OK_HELLO, id="chunked-byte-by-byte"),
    pytest.param(
        Script(answer=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xa7\x9f", keep_alive=False),
        BAD,
        id="garbage-binary-then-close",
    ),
    pytest.param(Script(answer=b"hello world\r\n\r\n"), BAD, id="garbage-lines-held-open"),
    pytest.param(Script(answer=b"\x00" * 64 + b"\r\n\r\n"), BAD, id="garbage-nul-held-open"),
    pytest.param(Script(answer=b"HTTP/1.1 200 OK\r\n\x00\r\n\r\n"), BAD, id="nul-header-line"),
    pytest.param(Script(answer=b"", close_after_bytes=0), BAD, id="close-before-any-byte"),
    pytest.param(
        Script(answer=X100, close_after_bytes=len(X100) - 90, reset=True),
        Expect(status=200, body=b"x" * 100, cut=True, reuse=False),
        id="reset-mid-body",
    ),
    pytest.param(
        # the head first, then a broken chunk: the head was relayed, so a cut
        Script(
            answer=head(b"200 OK", TE) + b"zz\r\nhello\r\n",
            piece_bytes=len(head(b"200 OK", TE)),
            pause_s=0.05,
        ),
        Expect(status=200, cut=True, reuse=False),
        id="bad-chunk-size-after-head",
    ),
    pytest.param(
        Script(answer=head(b"200 OK", TE) + b"zz\r\nhello\r\n"),
        Expect(status=200, cut=True, or_502=True, reuse=False),
        id="bad-chunk-size-with-head",
    ),
    pytest.param(Script(answer=b""), Expect(status=504, reuse=False), id="silence-before-head"),
    pytest.param(
        Script(answer=head(b"200 OK", b"Content-Length: 10") + b"hel"),
        Expect(status=200, body=b"hello worl", cut=True, reuse=False),
        id="silence-mid-body",
    ),
]


def _fits(got: Got, want: Expect) -> None:
    if want.status == 502 or (want.or_502 and got.status == 502):
        assert_502(got)
    elif want.status == 504:
        assert (got.status, got.complete) == (504, True), f"want 504 upstream timeout: {got}"
        assert json.loads(got.body) == ERR_504
    elif want.cut:
        assert_cut(got, want.status, want.body)
    else:
        assert_relayed(got, want.status, want.body)
        if want.no_length:
            assert got.header(b"content-length") is None, f"upstream Content-Length kept: {got}"


@pytest.mark.parametrize(("script", "want"), CASES)
async def test_odd_answer(tmp_path: Path, script: Script, want: Expect) -> None:
    async with proxy(tmp_path, OddUpstream()) as px:
        await warm_pool(px)
        name = px.name("case")
        px.up.scripts[name] = script
        px.doing.append(f"POST /v1/odd/{name}: {script!r:.300}")
        got = await ask(px.port, f"/v1/odd/{name}", px.keys.api, CHAT)
        _fits(got, want)
        await played(px, name)
        await assert_unharmed(px, px.up.requests_for(name), reuse=want.reuse)
        wire = (script.answer + script.stray)[: script.close_after_bytes]
        assert_forwarded_once(px, name, answered=bool(wire))


# -- every byte offset of a valid answer --------------------------------------------------

SWEEP = [pytest.param(SWEEP_LENGTH, id="length"), pytest.param(SWEEP_CHUNKED, id="chunked")]


@pytest.mark.parametrize("full", SWEEP)
async def test_close_at_every_offset(tmp_path: Path, full: bytes) -> None:
    """The upstream closes after k bytes, for every k short of the whole answer."""
    head_bytes = full.index(b"\r\n\r\n") + 4
    body = b"".join(ev.data for ev in h11_events(full) if isinstance(ev, h11.Data))
    problems: list[tuple[int, str]] = []
    async with proxy(tmp_path, OddUpstream()) as px:
        await warm_pool(px)
        for k in range(len(full)):
            name = px.name("cut")
            px.up.scripts[name] = Script(answer=full, close_after_bytes=k)
            px.doing.append(f"close after {k} bytes of {full!r}")
            try:
                got = await ask(px.port, f"/v1/odd/{name}", px.keys.api, CHAT)
                if k < head_bytes:
                    assert_502(got)
                else:
                    assert_cut(got, 200, body)
                await played(px, name)
                await assert_unharmed(px, px.up.requests_for(name), reuse=False)
                assert_forwarded_once(px, name, answered=k > 0)
            except AssertionError as exc:
                problems.append((k, str(exc).splitlines()[0]))
                if isinstance(exc, Hang):
                    break  # one hang says enough; more would only take CLIENT_LIMIT_S each
    if problems:
        pytest.fail(
            f"{len(problems)} of {len(full)} offsets wrong (head: {head_bytes} bytes):\n"
            + "\n".join(_ranges(problems)[:12])
        )


def _ranges(problems: list[tuple[int, str]]) -> list[str]:
    """Consecutive offsets with the same problem as one line: "k=3-9: ..."."""
    lines: list[tuple[int, int, str]] = []
    for k, why in problems:
        if lines and lines[-1][1] == k - 1 and lines[-1][2] == why:
            lines[-1] = (lines[-1][0], k, why)
        else:
            lines.append((k, k, why))
    return [f"k={a}: {why}" if a == b else f"k={a}-{b}: {why}" for a, b, why in lines]
