"""A fake x402 facilitator for the tests: ``GET /supported``, ``POST /verify``, ``POST /settle``
served on 127.0.0.1 from a thread (stdlib ``http.server``), every call recorded.

It never touches a chain: a settlement's transaction is derived from the payload, so a
test can predict it. Each endpoint's behaviour is set per test in ``behaviour``:

- ``"ok"``: verify ``isValid: true``; settle ``success: true``;
- ``"invalid:<code>"`` (verify) / ``"fail:<code>"`` (settle): a 200 with the negative
  answer and that code;
- ``"500"``: a 500 with a text body; ``"garbage"``: a 200 that is not JSON;
- ``"timeout"``: hold the request without answering (until the test ends);
- ``"drop"``: close the connection without a byte.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeFacilitator", "fake_facilitator", "settled_transaction"]


def settled_transaction(payload: dict[str, Any]) -> str:
    """The transaction the fake reports for settling ``payload``."""
    raw = json.dumps(payload.get("payload"), sort_keys=True).encode()
    return "0x" + hashlib.sha256(raw).hexdigest()


@dataclass
class FakeFacilitator:
    port: int
    behaviour: dict[str, str] = field(default_factory=lambda: {"verify": "ok", "settle": "ok"})
    fee_payers: dict[str, str] = field(default_factory=dict)  # solana network -> fee payer
    calls: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]

    def answer(self, path: str, body: Any) -> tuple[int, bytes] | str:
        endpoint = path.rsplit("/", 1)[-1]  # below any base path
        if endpoint == "supported":
            kinds: list[dict[str, Any]] = [
                {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"},
                {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
            ]
            for network, payer in self.fee_payers.items():
                extra = {"feePayer": payer}
                kinds.append(
                    {"x402Version": 2, "scheme": "exact", "network": network, "extra": extra}
                )
            return 200, json.dumps({"kinds": kinds, "extensions": [], "signers": {}}).encode()
        how = self.behaviour.get(endpoint, "ok")
        if how in ("timeout", "drop"):
            return how
        if how == "500":
            return 500, b"internal trouble"
        if how == "garbage":
            return 200, b"<html>not json"
        payload = body.get("paymentPayload", {}) if isinstance(body, dict) else {}
        accepted = payload.get("accepted", {})
        payer = _payer(payload)
        if endpoint == "verify":
            if how.startswith("invalid:"):
                answer = {"isValid": False, "invalidReason": how[8:], "payer": payer}
            else:
                answer = {"isValid": True, "payer": payer}
        elif how.startswith("fail:"):
            answer = {
                "success": False,
                "errorReason": how[5:],
                "transaction": "",
                "network": accepted.get("network", ""),
                "payer": payer,
            }
        else:
            answer = {
                "success": True,
                "transaction": settled_transaction(payload),
                "network": accepted.get("network", ""),
                "payer": payer,
            }
        return 200, json.dumps(answer).encode()


def _payer(payload: dict[str, Any]) -> str:
    inner = payload.get("payload", {})
    if isinstance(inner, dict) and isinstance(inner.get("authorization"), dict):
        return str(inner["authorization"].get("from", ""))
    return ""


def _handler(fake: FakeFacilitator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            path = self.path
            fake.calls.append((path, body, {k.lower(): v for k, v in self.headers.items()}))
            result = fake.answer(path, body)
            if result == "timeout":
                fake.release.wait(30)
                self.close_connection = True
                return
            if result == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            assert not isinstance(result, str)
            status, data = result
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up ("drop", "timeout" tests) is not news


@contextmanager
def fake_facilitator() -> Iterator[FakeFacilitator]:
    server = _Server(("127.0.0.1", 0), _handler(FakeFacilitator(port=0)))
    fake = FakeFacilitator(port=server.server_address[1])
    server.RequestHandlerClass = _handler(fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
