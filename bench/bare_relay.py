"""The floor of our stack: parse, check one key, forward on a kept-alive connection, relay.

``python -m bench.bare_relay LISTEN_PORT UPSTREAM_PORT`` with the key in $BENCH_KEY.
One upstream connection per client connection, no timeouts, no header hygiene
beyond the credential: a lower bound, not a product.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import sys
from functools import partial

import h11
import trio

KEY = ("Bearer " + os.environ.get("BENCH_KEY", "")).encode()
UPSTREAM_AUTH = b"Bearer upstream-secret"
DROP = {b"authorization", b"host", b"connection", b"keep-alive", b"transfer-encoding"}
DENIED = b'{"error":{"message":"invalid api key","type":"authentication_error"}}'


async def next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await stream.receive_some(65536))
    return event


async def send(conn: h11.Connection, stream: trio.SocketStream, *events: h11.Event) -> None:
    await stream.send_all(b"".join(conn.send(event) or b"" for event in events))


async def relay(port: int, client: trio.SocketStream) -> None:
    down, up, upstream = h11.Connection(h11.SERVER), h11.Connection(h11.CLIENT), None
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        while isinstance(request := await next_event(down, client), h11.Request):
            body = b""
            while isinstance(event := await next_event(down, client), h11.Data):
                body += event.data
            if not hmac.compare_digest(dict(request.headers).get(b"authorization", b""), KEY):
                head = [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(DENIED)),
                ]
                await send(
                    down, client, h11.Response(status_code=401, headers=head), h11.Data(data=DENIED)
                )
            else:
                upstream = upstream or await trio.open_tcp_stream("127.0.0.1", port)
                headers = [(k, v) for k, v in request.headers if k not in DROP]
                headers += [(b"host", b"upstream"), (b"authorization", UPSTREAM_AUTH)]
                forward = h11.Request(method=request.method, target=request.target, headers=headers)
                await send(up, upstream, forward, h11.Data(data=body), h11.EndOfMessage())
                response = await next_event(up, upstream)
                assert isinstance(response, h11.Response)
                keep = [(k, v) for k, v in response.headers if k not in DROP]
                await send(
                    down, client, h11.Response(status_code=response.status_code, headers=keep)
                )
                while isinstance(event := await next_event(up, upstream), h11.Data):
                    await send(down, client, event)
                up.start_next_cycle()
            await send(down, client, h11.EndOfMessage())
            down.start_next_cycle()
    for stream in (client, upstream):
        if stream is not None:
            await stream.aclose()


def main() -> None:
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    serve = partial(
        trio.serve_tcp, partial(relay, upstream), listen, host="127.0.0.1", backlog=4096
    )
    trio.run(serve)


if __name__ == "__main__":
    main()
