"""aroutd against arbitrary client bytes (SPEC §12, §13): well-formed answers, never a fault.

Hypothesis builds requests from a grammar (request lines, header lines with every kind
of credential and framing header, legal and not, bodies from chat JSON to deep nesting
and garbage), mutates their bytes, may pipeline two, and sends them in pieces to
``serve_connection`` over a memory stream, the real runtime forwarding to an
OddUpstream on loopback. What must hold for every example:

- what comes back is a sequence of whole HTTP/1.1 responses (read by h11);
- every error aroutd answers itself is the JSON envelope of SPEC §13;
- nothing reached the fault barrier (``internal_errors`` stays empty);
- the upstream never saw a credential of a client, only its own;
- a forwarded answer to the limited key carries its ``X-RateLimit-*``;
- the next client, on a new connection, is served.

The upstream-side twin is tests/test_upstream_fuzz.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aroutd.keytable.table import parse_keytable
from aroutd.shell.admin import handle_admin
from aroutd.shell.files import wallet_tokens
from aroutd.shell.handler import ConnInfo, handle_request
from aroutd.shell.runtime import Runtime
from aroutd.shell.server import Handler, serve_connection
from aroutd.store.sqlite import SqliteStore

from .oddupstream import OddUpstream
from .support import Keys, make_config, new_key, parse_replies, sha

EXAMPLES = 300
EXCHANGE_LIMIT_S = 10.0  # an example whose answer does not end within this is a hang
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
# a head that promises a body, then the client's end: the body is only to be dropped
BROKEN_OFF = b"GET /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"


@dataclass
class FuzzKeys(Keys):
    """The usual table and ``limited`` (rpm and rpd so high they never refuse)."""

    limited: str = ""
    wallet: str = ""  # a wallet JWT, issued once the runtime is built

    def __post_init__(self) -> None:
        self.limited = self.limited or new_key()

    def table(self) -> str:
        return super().table() + (
            f'\n[[keys]]\nid = "limited"\ntenant = "acme"\nsha256 = "{sha(self.limited)}"\n'
            "rpm_limit = 1000000000\nrpd_limit = 1000000000000\n"
        )

    def secrets(self) -> list[bytes]:
        keys = [self.api, self.narrow, self.mgmt, self.disabled, self.expired, self.limited]
        return [k.encode() for k in [*keys, self.wallet]]


@dataclass
class Bench:
    rt: Runtime
    keys: FuzzKeys
    up: OddUpstream


@asynccontextmanager
async def bench(tmp: Path) -> AsyncIterator[Bench]:
    async with trio.open_nursery() as nursery:
        up = OddUpstream()
        await nursery.start(up.serve)
        keys = FuzzKeys()
        cfg = make_config(tmp, up.port, keys, header_timeout_s=2.0, body_timeout_s=2.0)
        table = parse_keytable(keys.table(), path=tmp / "keys.toml")
        rt = Runtime.build(cfg, table, SqliteStore.open(tmp / "state.db"), wallet_tokens(cfg))
        assert rt.tokens is not None
        keys.wallet = rt.tokens.issue(WALLET, datetime.now(UTC))
        try:
            yield Bench(rt, keys, up)
        finally:
            await rt.aclose()
            nursery.cancel_scope.cancel()


async def exchange(
    rt: Runtime, pieces: list[bytes], peer: str = "127.0.0.1", *, handle: Handler = handle_request
) -> bytes:
    """Send ``pieces`` from ``peer``, then end the sending side; everything until the server
    closes."""
    client, server = trio.testing.memory_stream_pair()
    out = b""
    with trio.fail_after(EXCHANGE_LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, rt, server, ConnInfo(peer, "http"), handle)
            try:
                for piece in pieces:
                    await client.send_all(piece)
                await client.send_stream.aclose()
            except trio.BrokenResourceError:  # the server closed first: a refusal
                pass
            while chunk := await client.receive_some(65536):
                out += chunk
    return out


# -- the grammar ---------------------------------------------------------------------------

METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"G T"]
TARGETS = [
    b"/v1/chat/completions",
    b"/v1/messages",
    b"/v1beta/models/gemini-2.0-flash:generateContent",
    b"/v1/key",
    b"/api/v1/keys",
    b"/api/v1/balance",
    b"/healthz",
    b"/v1/realtime?model=gpt-4o-realtime",
    b"/v1/chat/completions?key=KEY",
    b"/v1/%2e%2e/chat",
    b"//v1/chat/completions",
    b"*",
    b"http://evil/v1/chat/completions",
    b"/v1/chat/completions#frag",
    b"/v1/x402/auth",
    b"/api/v1/keys/" + b"ab" * 32,
    b"/api/v1/transactions?offset=-1&page_size=99999999999",
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""]
WHO = ["api", "narrow", "mgmt", "disabled", "expired", "limited", "wallet", "bogus"]
WALLET = "eip155:8453:0x" + "1234567890" * 4
HEADER_LINES = [
    b"Host: t",
    b"Host: t",
    b"Host: a, b",
    b"Content-Type: application/json",
    b"Content-Type: multipart/form-data; boundary=x",
    b"Content-Length: 0",
    b"Content-Length: 5",
    b"Content-Length: 100000000000",
    b"Content-Length: -1",
    b"Content-Length: 3, 3",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: identity",
    b"Connection: close",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.KEY",
    b"Expect: 100-continue",
    b"X-Forwarded-For: 10.0.0.1",
    b"Forwarded: for=1.2.3.4",
    b"X-ARouter-Key-Id: forged",
    b" obs-fold",
    b"Bad Header: x",
    b"X: \x00\x7f",
    b"X-Long: " + b"a" * 70_000,
    b"SIGN-IN-WITH-X: e30=",  # {}
    b"SIGN-IN-WITH-X: !!!",
    b"PAYMENT-SIGNATURE: eyJ4NDAyVmVyc2lvbiI6Mn0=",  # {"x402Version":2}
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",  # a JWT that is not ours
]
CREDENTIALS = [b"Authorization: Bearer KEY", b"X-Api-Key: KEY", b"X-Goog-Api-Key: KEY"]

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
BODIES = st.one_of(
    st.just(CHAT),
    st.just(b""),
    st.builds(lambda v: json.dumps({"model": "gpt-4o", "x": v}).encode(), _json),
    st.just(b"[" * 5000 + b"]" * 5000),  # nesting attack
    st.just(b'{"model":"gpt-4o-mini","model":"gpt-4o"}'),  # two models
    st.just(b"5\r\nhello\r\n0\r\n\r\n"),
    st.just(b"ffffffffffffffffff\r\n"),
    st.builds(lambda v: json.dumps(v).encode(), _json),  # management-API-shaped or not
    st.just(b'{"name":"x","rpm_limit":1e999,"limit":-1,"allowed_models":[null]}'),
    st.binary(max_size=64),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """One request's bytes and whose key it carries."""
    who = draw(st.sampled_from(WHO))
    method, target = draw(st.sampled_from(METHODS)), draw(st.sampled_from(TARGETS))
    lines = draw(st.lists(st.sampled_from(HEADER_LINES), max_size=5))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(CREDENTIALS)))
    body = draw(BODIES)
    if draw(st.booleans()):
        lines.append(b"Content-Length: %d" % len(body))
    head = b"%s %s %s\r\n" % (method, target, draw(st.sampled_from(VERSIONS)))
    return head + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body, who


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted or cut."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["flip", "insert", "cut"]))
        if op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif out and at < len(out):
            if op == "flip":
                out[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del out[at : at + draw(st.integers(1, 8))]
    return bytes(out)


@st.composite
def connections(draw: st.DrawFn) -> tuple[list[bytes], list[str]]:
    """What a client sends on one connection (one or two requests), in pieces."""
    sent = draw(st.lists(requests(), min_size=1, max_size=2))
    data = b"".join(raw for raw, _ in sent)
    data = draw(mutated(data)) if draw(st.booleans()) else data
    cut = draw(st.sampled_from([0, 0, 1, 7, 200]))
    pieces = [data[i : i + cut] for i in range(0, len(data), cut)] if cut else [data]
    return pieces, [who for _, who in sent]


def _with_keys(pieces: list[bytes], whos: list[str], keys: FuzzKeys) -> list[bytes]:
    """The placeholder KEY of each piece replaced by the key of the connection's first
    request (a mutation may have split it: then it stays a bogus key)."""
    key = {"bogus": "lr_live_" + "0" * 48}.get(whos[0]) or getattr(keys, whos[0])
    return [p.replace(b"KEY", key.encode()) for p in pieces]


# -- the oracle ----------------------------------------------------------------------------


def check_answers(out: bytes, whos: list[str]) -> None:
    for reply in parse_replies(out):  # whole HTTP/1.1 responses, or an AssertionError
        ours = reply.header(b"x-request-id") is not None and not reply.body.startswith(b"own:")
        if ours and reply.status >= 400:
            envelope = reply.json()
            assert set(envelope) == {"error"}, envelope
            assert isinstance(envelope["error"]["message"], str), envelope
            assert isinstance(envelope["error"]["type"], str), envelope
        if whos[0] == "limited" and reply.body.startswith(b"own:"):
            # forwarded, so authenticated, and only the limited key was in the bytes
            assert reply.header(b"x-ratelimit-limit") == b"1000000000", reply


async def check_unharmed(b: Bench) -> None:
    assert not b.rt.metrics.internal_errors, dict(b.rt.metrics.internal_errors)
    seen = b"".join(s.target + b"".join(n + b":" + v for n, v in s.headers) for s in b.up.seen)
    assert not [k for k in b.keys.secrets() if k in seen], "a client's key reached the upstream"
    clean = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
        b"Authorization: Bearer " + b.keys.api.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(CHAT)
    ) + CHAT
    [reply] = parse_replies(await exchange(b.rt, [clean]))
    assert reply.status == 200 and reply.body == b"own:/v1/chat/completions", reply


@pytest.mark.parametrize("admin", [False, True], ids=["api", "admin"])
async def test_a_body_broken_off_is_answered_and_closed_not_a_fault(
    tmp_path: Path, admin: bool
) -> None:
    """Found by the fuzzer below: the body of a refused request (401 here, a /healthz on
    the admin listener) was dropped unguarded, and its end raised past the answer."""
    async with bench(tmp_path) as b:
        handle = handle_admin if admin else handle_request
        data = BROKEN_OFF.replace(b"/v1/chat/completions", b"/healthz") if admin else BROKEN_OFF
        [reply] = parse_replies(await exchange(b.rt, [data], handle=handle))
        assert reply.status == (200 if admin else 401)
        assert admin or reply.header(b"connection") == b"close"
        assert not b.rt.metrics.internal_errors


async def test_arbitrary_client_bytes(tmp_path: Path) -> None:
    """One runtime for the whole run; hypothesis drives it from a worker thread, each
    example going back into this trio run with ``trio.from_thread.run``."""
    async with bench(tmp_path) as b:
        peers = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))

        async def one_example(pieces: list[bytes], whos: list[str]) -> None:
            b.rt.metrics.internal_errors.clear()  # each example from none: it shrinks right
            b.up.seen.clear()
            # each from its own address: many 401s from one would be throttled (SPEC §4)
            out = await exchange(b.rt, _with_keys(pieces, whos, b.keys), next(peers))
            check_answers(out, whos)
            await check_unharmed(b)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(connections())
        @example(([BROKEN_OFF], ["api"]))  # once a fault at the barrier, and no answer
        def one(sent: tuple[list[bytes], list[str]]) -> None:
            trio.from_thread.run(one_example, *sent)

        await trio.to_thread.run_sync(one)
