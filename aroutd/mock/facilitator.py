"""``aroutd mock-facilitator``: a fake x402 facilitator (SPEC §10) on stdlib ``http.server``.

``GET /supported``, ``POST /verify``, ``POST /settle`` served from a thread (the tests,
``scripts/x402-demo``) or as a command; every call is recorded in ``calls``.

It never touches a chain and answers at once: a settlement's transaction is derived
from the payload (:func:`settled_transaction`), so a test can predict it. Each
endpoint's behaviour is set in ``behaviour`` (the command always answers ``"ok"``):

- ``"ok"``: verify ``isValid: true``; settle ``success: true``;
- ``"invalid:<code>"`` (verify) / ``"fail:<code>"`` (settle): a 200 with the negative
  answer and that code;
- ``"500"``: a 500 with a text body; ``"garbage"``: a 200 that is not JSON;
- ``"timeout"``: hold the request without answering (until the context ends);
- ``"drop"``: close the connection without a byte.

``/supported`` names Base and Base Sepolia, and the Solana networks of ``fee_payers``
with their fee payer. Nothing in aroutd.shell imports this module.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeFacilitator", "fake_facilitator", "main", "settled_transaction"]


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
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]

    def supported(self) -> bytes:
        kinds: list[dict[str, Any]] = [
            {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"},
            {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
        ]
        for network, payer in self.fee_payers.items():
            extra = {"feePayer": payer}
            kinds.append({"x402Version": 2, "scheme": "exact", "network": network, "extra": extra})
        return json.dumps({"kinds": kinds, "extensions": [], "signers": {}}).encode()

    def answer(self, path: str, body: Any) -> tuple[int, bytes] | str:
        endpoint = path.rsplit("/", 1)[-1]  # below any base path
        if endpoint == "supported":
            return 200, self.supported()
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
        # TCP_NODELAY: the head and the body are two writes; with Nagle the body waits for
        # the client's delayed ACK of the head (40 ms on a kept-alive connection).
        disable_nagle_algorithm = True

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


class _Server6(_Server):
    address_family = socket.AF_INET6


@contextmanager
def fake_facilitator(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeFacilitator]:
    """The fake serving on ``host:port`` (0: a free port) from a thread, until the end."""
    kind = _Server6 if ":" in host else _Server
    server = kind((host, port), _handler(FakeFacilitator(port=0)))
    fake = FakeFacilitator(port=server.server_address[1], host=host)
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


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(host: str, port: int) -> int:
    """``aroutd mock-facilitator``: serve on ``host:port`` until SIGINT/SIGTERM; 1 when
    it cannot listen. The first line on stdout says where (the port bound, for 0)."""
    try:
        with fake_facilitator(host, port) as fake:
            print(f"mock-facilitator listening on {fake.url}", flush=True)
            signal.signal(signal.SIGTERM, _stop)
            try:
                while True:
                    signal.pause()
            except KeyboardInterrupt:
                pass
    except OSError as exc:
        print(f"mock-facilitator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
