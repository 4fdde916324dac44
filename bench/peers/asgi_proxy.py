"""Peer: a plain ASGI proxy on hypercorn + httpx that checks one key (``--peers`` only).

Run from its own venv (bench/.peers/asgi):
``BENCH_UPSTREAM=http://127.0.0.1:P BENCH_KEY=lr_live_...
hypercorn --bind 127.0.0.1:Q asgi_proxy:app``
It streams the upstream's answer back chunk by chunk, keeping upstream connections alive.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import httpx

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9999")
KEY = ("Bearer " + os.environ.get("BENCH_KEY", "")).encode()
DROP = {b"authorization", b"host", b"connection", b"keep-alive", b"transfer-encoding"}
DENIED = b'{"error":{"message":"invalid api key","type":"authentication_error"}}'
_client: list[httpx.AsyncClient] = []


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            limits = httpx.Limits(max_keepalive_connections=64, max_connections=256)
            _client.append(httpx.AsyncClient(base_url=UPSTREAM, limits=limits, timeout=30.0))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for client in _client:
                await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if not hmac.compare_digest(headers.get(b"authorization", b""), KEY):
        head = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 401, "headers": head})
        await send({"type": "http.response.body", "body": DENIED})
        return
    forward = [(k, v) for k, v in scope["headers"] if k not in DROP]
    forward.append((b"authorization", b"Bearer upstream-secret"))
    query = scope.get("query_string", b"").decode()
    url = scope["path"] + ("?" + query if query else "")
    client = _client[0]
    request = client.build_request(scope["method"], url, headers=forward, content=body)
    response = await client.send(request, stream=True)
    try:
        relayed = [(k, v) for k, v in response.headers.raw if k.lower() not in DROP]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": relayed}
        )
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await response.aclose()
