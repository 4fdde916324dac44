"""WebSocket upgrades (SPEC §6), with trio-websocket on both sides of the daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from aroutd.shell.daemon import Bound, serve

from .support import Keys, make_config, new_key, sha


@dataclass
class EchoUpstream:
    handshakes: list[tuple[list[tuple[bytes, bytes]], list[str], str]] = field(default_factory=list)

    async def handle(self, request: WebSocketRequest) -> None:
        self.handshakes.append(
            (list(request.headers), list(request.proposed_subprotocols), request.path)
        )
        ws = await request.accept(subprotocol="realtime")
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:  # the client is done: so is this connection
                return
            assert isinstance(message, str), message  # the tests send text frames only
            await ws.send_message(f"echo: {message}")


@dataclass
class LimitedKeys(Keys):
    """The usual table and ``limited``: 30 requests a minute."""

    limited: str = field(default_factory=new_key)

    def table(self) -> str:
        return super().table() + (
            f'\n[[keys]]\nid = "limited"\ntenant = "acme"\nsha256 = "{sha(self.limited)}"\n'
            "rpm_limit = 30\n"
        )


@asynccontextmanager
async def proxied(tmp: Path) -> AsyncIterator[tuple[int, LimitedKeys, EchoUpstream]]:
    up = EchoUpstream()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, up.handle, "127.0.0.1", 0, None)
        keys = LimitedKeys()
        cfg = make_config(tmp, server.port, keys)
        bound: Bound = await nursery.start(serve, cfg)
        yield bound.addresses[0][1], keys, up
        nursery.cancel_scope.cancel()


async def test_realtime_handshake_and_relay(tmp_path: Path) -> None:
    async with proxied(tmp_path) as (port, keys, up):
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-4o-realtime"
        protocols = ["realtime", f"openai-insecure-api-key.{keys.api}", "openai-beta.realtime-v1"]
        async with open_websocket_url(url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "realtime"
            for text in ("hello", "x" * 100_000):
                await ws.send_message(text)
                assert await ws.get_message() == f"echo: {text}"
        [(headers, offered, path)] = up.handshakes
        seen = {n.lower(): v for n, v in headers}
        assert seen[b"authorization"] == b"Bearer upstream-secret"
        assert seen[b"x-arouter-key-id"] == b"main"
        assert offered == ["realtime", "openai-beta.realtime-v1"]  # the key is not passed on
        assert keys.api.encode() not in b"".join(n + v for n, v in headers)
        assert path == "/v1/realtime?model=gpt-4o-realtime"


async def test_a_limited_keys_handshake_is_counted_and_shows_its_window(
    tmp_path: Path,
) -> None:
    async with proxied(tmp_path) as (port, keys, _):
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-4o-realtime"
        protocols = ["realtime", f"openai-insecure-api-key.{keys.limited}"]
        for remaining in (b"29", b"28"):
            async with open_websocket_url(url, subprotocols=protocols) as ws:
                seen = {n.lower(): v for n, v in ws.handshake_headers}
                assert (seen[b"x-ratelimit-limit"], seen[b"x-ratelimit-remaining"]) == (
                    b"30",
                    remaining,
                )
                await ws.send_message("hi")
                assert await ws.get_message() == "echo: hi"


@pytest.mark.parametrize(
    ("which", "status"),
    [pytest.param("bad", 401, id="unknown-key"), pytest.param("narrow", 403, id="model-scope")],
)
async def test_handshake_refused(tmp_path: Path, which: str, status: int) -> None:
    async with proxied(tmp_path) as (port, keys, up):
        key = keys.narrow if which == "narrow" else "lr_live_" + "3" * 48
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-4o-realtime"
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                url, extra_headers=[(b"authorization", f"Bearer {key}".encode())]
            ):
                pass
        assert rejected.value.status_code == status
        assert up.handshakes == []
