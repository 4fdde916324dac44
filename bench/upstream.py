"""A trio + h11 upstream for the benchmarks: a fixed JSON answer, or a timestamped SSE stream.

``python -m bench.upstream --port P [--sse-events N --sse-interval-ms MS]``

- A request whose body has ``"stream": true`` gets an OpenAI-style SSE stream of
  N chunks, one every MS milliseconds, each carrying ``"t_ns"`` = the sender's
  ``time.monotonic_ns()`` just before the write (CLOCK_MONOTONIC is system-wide,
  so the client subtracts it from its own receive time: the per-event delay).
  Then a usage-only chunk and ``data: [DONE]``.
- Any other request gets the fixed chat completion below (Content-Length framed).

Used directly for the SSE scenario, and as the fixed-response upstream when
nginx is not installed (it then is a possible bottleneck: the report says so).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import h11
import trio

__all__ = ["FIXED_BODY", "REQUEST_BODY", "SSE_REQUEST_BODY", "main", "serve"]

REQUEST_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}'
SSE_REQUEST_BODY = (
    b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
    b'"messages":[{"role":"user","content":"Say hi"}]}'
)
FIXED_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    },
    separators=(",", ":"),
).encode()

_CHUNK_HEAD = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok"},'
    b'"finish_reason":null}],"t_ns":'
)
_USAGE_EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":50,"total_tokens":59}}\n\n'
    b"data: [DONE]\n\n"
)
_RECV_BYTES = 65536


async def _next_event(
    conn: h11.Connection, stream: trio.SocketStream
) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_RECV_BYTES))


async def _send_sse(
    conn: h11.Connection, stream: trio.SocketStream, events: int, interval_s: float
) -> None:
    head = h11.Response(
        status_code=200,
        headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache")],
    )
    await stream.send_all(conn.send(head) or b"")
    for _ in range(events):
        await trio.sleep(interval_s)
        chunk = _CHUNK_HEAD + str(time.monotonic_ns()).encode() + b"}\n\n"
        await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.Data(data=_USAGE_EVENT)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _handle(stream: trio.SocketStream, *, events: int, interval_s: float) -> None:
    conn = h11.Connection(h11.SERVER)
    fixed_head = [("content-type", "application/json"), ("content-length", str(len(FIXED_BODY)))]
    try:
        while True:
            event = await _next_event(conn, stream)
            if not isinstance(event, h11.Request):
                return
            body = bytearray()
            while not isinstance(event, h11.EndOfMessage):
                event = await _next_event(conn, stream)
                if isinstance(event, h11.Data):
                    body += event.data
                elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
            if b'"stream":true' in body.replace(b" ", b""):
                await _send_sse(conn, stream, events, interval_s)
            else:
                out = conn.send(h11.Response(status_code=200, headers=fixed_head)) or b""
                out += conn.send(h11.Data(data=FIXED_BODY)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
            if conn.our_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await stream.aclose()


async def serve(
    port: int,
    *,
    events: int = 50,
    interval_s: float = 0.05,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on 127.0.0.1:port (0: any free port, reported through task_status)."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_handle, events=events, interval_s=interval_s), listeners)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sse-events", type=int, default=50)
    parser.add_argument("--sse-interval-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    trio.run(
        partial(serve, args.port, events=args.sse_events, interval_s=args.sse_interval_ms / 1000)
    )


if __name__ == "__main__":
    main()
