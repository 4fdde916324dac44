"""aroutd against arbitrary upstream bytes (SPEC §6): a well-formed answer or a cut, always.

The oracle runs the same bytes through h11 alone; see tests/test_upstream_odd.py
for the named cases and the choices where the contract leaves room.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h11
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .oddproxy import (
    CHAT,
    FUZZ_EXAMPLES,
    HELLO,
    HELLO_CHUNKED,
    POISON,
    SWEEP_CHUNKED,
    TE,
    Proxy,
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

# -- hypothesis: arbitrary upstream bytes ------------------------------------------------

VALID_ANSWERS = [
    HELLO,
    HELLO_CHUNKED,
    SWEEP_CHUNKED,
    head(b"200 OK", TE, b"Trailer: X-U") + chunked(b"ab", b"cd", trailers=(b"X-U: 1",)),
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited",
    head(b"204 No Content"),
    head(b"304 Not Modified", b"Content-Length: 5"),
    head(b"100 Continue") + HELLO,
    answer(b'{"error":"teapot"}', status=b"418 I'm a teapot"),
]
HEADER_LINES = [
    b"Content-Length: 0",
    b"Content-Length: 5",
    b"Content-Length: 99999",
    b"Content-Length: 3, 4",
    b"Content-Length: +5",
    b"Content-Length: 99999999999999999999999",
    TE,
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: identity",
    b"Connection: close",
    b"Connection: keep-alive, Content-Length",
    b"Upgrade: h2c",
    b"X-Folded: a\r\n b",
    b" X-Leading-Space: x",
    b"X-Empty:",
    b"X-Request-Id: forged",
]
Mutation = Literal["insert", "truncate", "delete", "dup-header", "add-header", "append", "flip"]


@st.composite
def mutated_answers(draw: st.DrawFn) -> bytes:
    """A valid answer changed 1-3 times: bytes inserted, cut, flipped; headers doubled, added."""
    data = bytearray(draw(st.sampled_from(VALID_ANSWERS)))
    kinds: list[Mutation] = [
        "insert",
        "truncate",
        "delete",
        "dup-header",
        "add-header",
        "append",
        "flip",
    ]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from([b"\r\n", b"\n", b" "])
            )
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind in ("dup-header", "add-header"):
            end = data.find(b"\r\n\r\n")
            if end < 0:
                continue
            lines = bytes(data[:end]).split(b"\r\n")
            where = draw(st.integers(1, len(lines)))
            if kind == "dup-header" and len(lines) > 1:
                line = lines[draw(st.integers(1, len(lines) - 1))]
            else:
                line = draw(st.sampled_from(HEADER_LINES))
            lines.insert(where, line)
            data[:end] = b"\r\n".join(lines)
        elif kind == "append":
            data += draw(st.sampled_from([POISON, HELLO, b"junk", b"\r\n", b"0\r\n\r\n"]))
    return bytes(data)


@dataclass(frozen=True, slots=True)
class Prediction:
    """What h11 (the daemon's upstream parser) makes of an answer: the oracle."""

    kind: Literal["502", "complete", "broken"]  # broken: a head, then the body failed
    status: int = 0
    body: bytes = b""
    ambiguous: bool = False  # Content-Length together with Transfer-Encoding


def predict(data: bytes) -> Prediction:
    events = h11_events(data)
    head = next((e for e in events if isinstance(e, h11.Response)), None)
    if head is None:
        return Prediction("502")
    names = {n for n, _ in head.headers}
    ambiguous = b"content-length" in names and b"transfer-encoding" in names
    body = b"".join(e.data for e in events if isinstance(e, h11.Data))
    kind: Literal["complete", "broken"] = (
        "complete" if isinstance(events[-1], h11.EndOfMessage) else "broken"
    )
    return Prediction(kind, head.status_code, body, ambiguous)


async def _fuzz_one(px: Proxy, data: bytes, piece_bytes: int) -> None:
    name = px.name("fuzz")
    px.up.scripts[name] = Script(answer=data, piece_bytes=piece_bytes, pause_s=0, keep_alive=False)
    px.doing.append(f"fuzz answer {data!r} in pieces of {piece_bytes}")
    got = await ask(px.port, f"/v1/odd/{name}", px.keys.api, CHAT)
    assert got.malformed is None, f"the client got a malformed response: {got}"
    want = predict(data)
    ours = got.status == 502 and got.complete and got.body != want.body
    if want.kind == "502" or (ours and (want.kind == "broken" or want.ambiguous)):
        assert_502(got)  # (a broken or ambiguous answer: our 502 is right while nothing was sent)
    elif want.kind == "complete":
        assert_relayed(got, want.status, want.body)
        if want.ambiguous:
            assert got.header(b"content-length") is None, f"upstream Content-Length kept: {got}"
    else:
        assert_cut(got, want.status, want.body)
    await played(px, name)
    await assert_unharmed(px, px.up.requests_for(name), reuse=None)
    assert_forwarded_once(px, name, answered=bool(data))


async def test_arbitrary_upstream_bytes(tmp_path: Path) -> None:
    """Whatever the upstream sends, the client gets a well-formed response or a cut one.

    One daemon for the whole run; hypothesis drives it from a worker thread, each
    example going back into this trio run with ``trio.from_thread.run``.
    """
    async with proxy(tmp_path, OddUpstream()) as px:
        await warm_pool(px)

        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            data=st.binary(max_size=200) | mutated_answers() | mutated_answers(),
            piece_bytes=st.sampled_from([0, 0, 1, 3, 16]),
        )
        def one(data: bytes, piece_bytes: int) -> None:
            trio.from_thread.run(_fuzz_one, px, data, piece_bytes)

        await trio.to_thread.run_sync(one)
