"""``aroutd mock-upstream``: the fake OpenAI / Anthropic / Gemini upstream, served by hypercorn.

The trio shell around :mod:`aroutd.mock.router`: :func:`make_app` is a plain ASGI app that
reads the request, asks the pure router for the answer and plays it out, one ASGI body
message per SSE event so every event is flushed on its own; :func:`serve` runs it on
hypercorn (access log off) and reports the bound port; :func:`main` is the command.

``GET /mock/stats`` (also ``/v1/mock/stats``) answers ``{requests, disconnects,
streams_completed}``: a client that goes away mid-response cancels the response and counts as
a disconnect, so a proxy test can see its cancellation reach the upstream.
See :mod:`aroutd.mock.router` for the endpoints and the ``X-Mock-*`` control headers.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from aroutd.errors import BadRequest
from aroutd.mock import providers as p
from aroutd.mock.router import MockAnswer, MockControls, MockRequest, error_response, respond

__all__ = ["DEFAULT_LISTEN", "main", "make_app", "parse_listen", "serve"]

DEFAULT_LISTEN = "127.0.0.1:9999"
STATS_PATHS = ("/mock/stats", "/v1/mock/stats")

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Stats:
    """Counters behind GET /mock/stats (shell state, mutated by the app only)."""

    __slots__ = ("disconnects", "requests", "streams_completed")

    def __init__(self) -> None:
        self.requests = 0
        self.disconnects = 0
        self.streams_completed = 0

    def as_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "disconnects": self.disconnects,
            "streams_completed": self.streams_completed,
        }


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client left first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _request_of(scope: Scope, body: bytes) -> MockRequest:
    headers = tuple(
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in scope["headers"]
    )
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    return MockRequest(
        method=scope["method"],
        path=scope["path"],
        raw_path=bytes(raw_path).decode("latin-1"),
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=headers,
        body=body,
    )


def make_app(*, delay_s: float = 0.0, event_delay_s: float = 0.0) -> ASGIApp:
    """The mock as an ASGI app. ``delay_s`` precedes every response head; ``event_delay_s``
    separates SSE events (both overridable per request with the X-Mock-* headers)."""
    stats = _Stats()

    async def play(answer: MockAnswer, send: Send, state: dict[str, bool]) -> None:
        response, controls = answer.response, answer.controls
        wait_s = delay_s + controls.delay_s
        if wait_s > 0:
            await trio.sleep(wait_s)
        headers = [[k.encode("latin-1"), v.encode("latin-1")] for k, v in response.headers]
        if not response.events:  # a whole body is framed by length, a stream is chunked
            headers.append([b"content-length", str(len(response.body)).encode()])
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if not response.events:
            state["done"] = True
            await send({"type": "http.response.body", "body": response.body, "more_body": False})
            return
        gap_s = event_delay_s if controls.event_delay_s is None else controls.event_delay_s
        for index, event in enumerate(response.events):
            if index and gap_s > 0:
                await trio.sleep(gap_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        state["done"] = True
        stats.streams_completed += 1
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def watch_disconnect(
        receive: Receive, cancel: trio.CancelScope, state: dict[str, bool]
    ) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not state["done"]:
                    stats.disconnects += 1
                    cancel.cancel()
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await receive()  # websocket.connect; closing before accept answers 403
            await send({"type": "websocket.close", "code": 1008})
            return
        body = await _read_body(receive)
        if body is None:
            stats.disconnects += 1
            return
        req = _request_of(scope, body)
        if req.path in STATS_PATHS:
            answer = MockAnswer(
                response=p.json_response(200, stats.as_json()), controls=MockControls()
            )
        else:
            stats.requests += 1
            try:
                answer = respond(req, now=int(time.time()))
            except Exception:  # respond() is total; this only keeps a bug from becoming a traceback
                error = error_response("openai", 500, "mock internal error", "server_error")
                answer = MockAnswer(response=error, controls=MockControls())
        state = {"done": False}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope, state)
            await play(answer, send, state)
            nursery.cancel_scope.cancel()

    return app


def _format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); anything else raises BadRequest."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
        if ":" in host:
            sep = ""  # a bare IPv6 address needs brackets
    port_ok = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if (
        not sep
        or not host
        or not port_ok
        or int(port_text) > 65535
        or any(c in host for c in "[]/ ")
    ):
        raise BadRequest(f"listen address must be HOST:PORT or [V6]:PORT, not {text!r}")
    return host, int(port_text)


async def serve(
    host: str,
    port: int,
    *,
    delay_s: float = 0.0,
    event_delay_s: float = 0.0,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the mock on host:port (0 picks a free port) until cancelled or shutdown_trigger
    returns; reports the bound port through ``task_status``."""
    config = HypercornConfig()
    config.bind = [_format_hostport(host, port)]
    config.accesslog = None
    config.loglevel = "WARNING"  # no "Running on" banner; main() prints its own line
    app = make_app(delay_s=delay_s, event_delay_s=event_delay_s)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=shutdown_trigger, mode="asgi")
        )
        # hypercorn reports "http://HOST:PORT" with the port the kernel picked
        task_status.started(int(binds[0].rpartition(":")[2]))


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _main_async(host: str, port: int, delay_s: float, event_delay_s: float) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            partial(
                serve,
                host,
                port,
                delay_s=delay_s,
                event_delay_s=event_delay_s,
                shutdown_trigger=_until_signal,
            )
        )
        print(f"mock-upstream listening on http://{_format_hostport(host, bound)}", flush=True)


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _find(inner, kind)) is not None:
                return found
    return None


def main(argv: list[str]) -> int:
    """``aroutd mock-upstream [--listen HOST:PORT] [--delay-ms N] [--event-delay-ms N]``."""
    parser = argparse.ArgumentParser(
        prog="aroutd mock-upstream",
        description="A fake OpenAI/Anthropic/Gemini upstream with deterministic usage.",
    )
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before every response")
    parser.add_argument("--event-delay-ms", type=float, default=0.0, help="wait between SSE events")
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except BadRequest as exc:
        parser.error(exc.message)
    for name in ("delay_ms", "event_delay_ms"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            parser.error(f"--{name.replace('_', '-')} must be a non-negative number")
    try:
        trio.run(_main_async, host, port, args.delay_ms / 1000, args.event_delay_ms / 1000)
    except BaseException as exc:
        if _find(exc, KeyboardInterrupt) is not None:
            return 0
        error = _find(exc, OSError)
        if error is None:
            raise
        print(
            f"mock-upstream: cannot listen on {args.listen}: {error}", file=sys.stderr, flush=True
        )
        return 1
    return 0
