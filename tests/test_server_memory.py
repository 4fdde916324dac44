"""The connection loop over in-memory streams, with trio's autojump clock: no sockets, no sleeps.

Timeouts of minutes run in virtual time, so the idle and header timeouts are
tested at their real defaults.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from aroutd.keytable.table import KeyTable
from aroutd.shell.handler import ConnInfo
from aroutd.shell.runtime import Runtime
from aroutd.shell.server import serve_connection
from aroutd.store.sqlite import SqliteStore

from .support import Keys, make_config

INFO = ConnInfo(peer_ip="127.0.0.1", proto="http")
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"


def _runtime(tmp: Path) -> Runtime:
    cfg = make_config(tmp, 9, Keys())
    store = SqliteStore.open(tmp / "state.db")
    return Runtime.build(cfg, KeyTable(tenants={}, by_digest={}), store, None)


async def _read_until_eof(stream: trio.abc.Stream) -> bytes:
    out = b""
    while chunk := await stream.receive_some(65536):
        out += chunk
    return out


async def test_pipelined_requests_in_one_write(tmp_path: Path, autojump_clock: object) -> None:
    rt = _runtime(tmp_path)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        last = b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        await client.send_all(HEALTH + HEALTH + last)
        out = await _read_until_eof(client)
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert out.count(b'{"status":"ok"}') == 3


async def test_idle_timeout_at_its_default(tmp_path: Path, autojump_clock: object) -> None:
    rt = _runtime(tmp_path)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        start = trio.current_time()
        await client.send_all(HEALTH)
        out = await _read_until_eof(client)
        waited = trio.current_time() - start
    assert out.startswith(b"HTTP/1.1 200 ")
    assert 75 <= waited < 76  # idle_timeout_s = 75


async def test_partial_head_gets_408_after_header_timeout(
    tmp_path: Path, autojump_clock: object
) -> None:
    rt = _runtime(tmp_path)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        start = trio.current_time()
        await client.send_all(b"GET /healthz HTTP/1.1\r\nhost:")
        out = await _read_until_eof(client)
        waited = trio.current_time() - start
    assert out.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in out.lower()
    assert 10 <= waited < 11  # header_timeout_s = 10


async def test_slowloris_on_a_kept_alive_connection(tmp_path: Path, autojump_clock: object) -> None:
    """The header timeout also applies to the second request's head, from its first byte."""
    rt = _runtime(tmp_path)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        await client.send_all(HEALTH)
        first = await client.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        await trio.sleep(30)
        await client.send_all(b"GET /healthz HTTP/1.1\r\n")
        start = trio.current_time()
        out = await _read_until_eof(client)
        waited = trio.current_time() - start
    assert out.startswith(b"HTTP/1.1 408 ")
    assert 10 <= waited < 11


async def test_drain_closes_idle_connections_at_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    rt = _runtime(tmp_path)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        await client.send_all(HEALTH)
        assert (await client.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        await trio.sleep(1)
        start = trio.current_time()
        rt.start_draining()
        assert await _read_until_eof(client) == b""
        assert trio.current_time() - start < 0.1


async def test_draining_response_says_close(tmp_path: Path, autojump_clock: object) -> None:
    rt = _runtime(tmp_path)
    rt.start_draining()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, rt, server, INFO)
        await client.send_all(HEALTH + HEALTH)
        out = await _read_until_eof(client)
    assert out.count(b"HTTP/1.1 200 ") == 1
    assert b"connection: close" in out.lower()
