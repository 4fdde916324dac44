"""``scripts/x402-demo``: an x402 payment (SPEC §10) walked through step by step, on loopback.

    python -m aroutd.mock.x402_walkthrough

In a temporary folder it starts the bundled mock upstream (``aroutd mock-upstream``) and
aroutd (``aroutd serve``, ``[x402] enabled`` on Base Sepolia with a $1 tier) as child
processes, and the fake facilitator (:mod:`aroutd.mock.facilitator`) in a thread, every
one on 127.0.0.1 and a free port. A throwaway eth-account key then pays, with the x402
package's own client, and each step is printed:

1. a chat request with no credential: 402 and the decoded ``PAYMENT-REQUIRED``;
2. the x402 client signs the EIP-3009 authorization (``PAYMENT-SIGNATURE``);
3. the retry: 200 with the model's answer, and the decoded ``PAYMENT-RESPONSE``;
4. ``GET /api/v1/balance`` and ``/api/v1/transactions`` with the wallet JWT it holds;
5. the same payment once more: 402, refused as a replay.

Nothing reaches a chain or a provider. It needs the x402, eth-account and httpx
packages (aroutd's test extras: ``scripts/setup test``). Exit status 0 when every step
went as described, 1 with what did not; bounded in time (``TIMEOUT_S``); the children
and the folder are removed at exit, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import base64
import json
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from aroutd.mock.facilitator import FakeFacilitator, fake_facilitator

__all__ = ["main"]

TIMEOUT_S = 120  # the whole walk-through
START_TIMEOUT_S = 30.0  # one child, until it listens
NETWORK = "eip155:84532"  # Base Sepolia
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"  # any address: nothing is on a chain
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
NEEDED = {"x402": "x402", "eth_account": "eth-account", "httpx": "httpx"}
CONFIG = """\
[server]
listen = ["127.0.0.1:{port}"]
admin_listen = ""
public_url = "http://127.0.0.1:{port}"

[keys]
file = "keys.toml"

[state]
path = "state/aroutd.db"

[wallet]
jwt_secret_file = "state/jwt.secret"

[upstreams.mock]
url = "http://127.0.0.1:{mock_port}"
auth_header = "Authorization"
auth_value = "Bearer mock-upstream-key"

[[routes]]
prefix = "/v1/"
upstream = "mock"
provider = "openai"

[x402]
enabled = true
facilitator_url = "{facilitator}"
pay_to_evm = "{pay_to}"
networks = ["{network}"]
topup_usd = 5.0
topup_tiers_usd = [1.0, 5.0, 10.0]  # the $1 tier: the Python client pays it unattended

[pricing."openai/gpt-4o-mini"]  # USD per million tokens: dear, so that the cost shows
input = 150.0
output = 600.0
"""


class Failed(Exception):
    """A step did not go as described."""


@dataclass
class _Child:
    """A child process whose output (``stream``) is read line by line in a thread."""

    name: str
    popen: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str) -> str:
        """The first line containing ``text``, within START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break  # it exited
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise Failed(f"{self.name} did not start:\n{''.join(self.seen[-10:])}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _spawn(stack: ExitStack, name: str, args: list[str], stream: str) -> _Child:
    """``python -m aroutd ARGS``, stopped when ``stack`` closes; ``stream`` is read."""
    out = subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL
    err = subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL
    popen = subprocess.Popen(
        [sys.executable, "-m", "aroutd", *args],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        text=True,
    )
    child = _Child(name, popen)
    stack.callback(child.stop)
    threading.Thread(target=child.read, args=(getattr(popen, stream),), daemon=True).start()
    return child


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(stack: ExitStack, folder: Path, fac: FakeFacilitator) -> str:
    """The mock upstream and aroutd in ``folder``; aroutd's base URL."""
    mock = _spawn(
        stack, "the mock upstream", ["mock-upstream", "--listen", "127.0.0.1:0"], "stdout"
    )
    mock_port = int(mock.wait_for("listening on http://").strip().rsplit(":", 1)[1])
    port = _free_port()
    (folder / "keys.toml").write_text("[tenants.demo]\n")
    config = folder / "aroutd.toml"
    config.write_text(
        CONFIG.format(
            port=port, mock_port=mock_port, facilitator=fac.url, pay_to=PAY_TO, network=NETWORK
        )
    )
    aroutd = _spawn(stack, "aroutd", ["serve", "--config", str(config)], "stderr")
    aroutd.wait_for('"event":"listening"')
    return f"http://127.0.0.1:{port}"


# --- printing ---------------------------------------------------------------------------


def say(text: str = "", indent: int = 0) -> None:
    print(" " * indent + text, flush=True)


def short(text: str, head: int = 10, tail: int = 6) -> str:
    return text if len(text) <= head + tail + 1 else f"{text[:head]}…{text[-tail:]}"


def usdc(atomic: str | int) -> str:
    return f"{int(atomic) / 1_000_000:.2f} USDC"


def decoded(value: str | None, name: str) -> dict[str, Any]:
    if not value:
        raise Failed(f"no {name} header")
    obj: dict[str, Any] = json.loads(base64.b64decode(value, validate=True))
    return obj


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(what)


# --- the steps ----------------------------------------------------------------------------


def step_challenge(http: Any, base: str) -> Any:
    say("1. POST /v1/chat/completions with no credential")
    r = http.post(f"{base}/v1/chat/completions", json=CHAT)
    expect(r.status_code == 402, f"expected 402, got {r.status_code}: {r.text}")
    say(f"-> {r.status_code} {r.json()['error']['message']}", 3)
    challenge = decoded(r.headers.get("payment-required"), "PAYMENT-REQUIRED")
    say(f"PAYMENT-REQUIRED, decoded: x402Version {challenge['x402Version']},", 3)
    say(f"resource {challenge['resource']['url']}, accepts:", 5)
    for a in challenge["accepts"]:
        price = f"{usdc(a['amount'])} ({a['amount']})"
        say(f"{a['scheme']} on {a['network']}: {price}, payTo {short(a['payTo'])}", 5)
    say("(and the sign-in-with-x extension, to sign in without paying)", 5)
    return r


def step_sign(challenge: Any, account: Any) -> dict[str, str]:
    from x402 import x402ClientSync
    from x402.http import x402HTTPClientSync
    from x402.mechanisms.evm.exact import register_exact_evm_client

    say()
    say("2. The x402 client (x402ClientSync + register_exact_evm_client) signs for it")
    client = register_exact_evm_client(x402ClientSync(), account)
    http = x402HTTPClientSync(client)
    required = http.get_payment_required_response(
        lambda n: challenge.headers.get(n), challenge.content
    )
    headers: dict[str, str] = http.encode_payment_signature_header(
        client.create_payment_payload(required)
    )
    sent = decoded(headers.get("PAYMENT-SIGNATURE"), "PAYMENT-SIGNATURE")
    auth = sent["payload"]["authorization"]
    say(f"it picks {usdc(sent['accepted']['amount'])}: it pays at most $1 without asking", 3)
    say(f"EIP-3009 TransferWithAuthorization on {sent['accepted']['network']}:", 3)
    say(f"payer {auth['from']}, amount {usdc(auth['value'])} ({auth['value']}),", 5)
    say(f"payTo {auth['to']}, nonce {short(auth['nonce'])}", 5)
    say(f"PAYMENT-SIGNATURE: {len(headers['PAYMENT-SIGNATURE'])} characters of base64", 3)
    expect(auth["from"] == account.address, "the payer is not the throwaway wallet")
    return headers


def step_paid(http: Any, base: str, pay: dict[str, str], fac: FakeFacilitator) -> str:
    say()
    say("3. The same request again, with PAYMENT-SIGNATURE")
    fac.calls.clear()
    r = http.post(f"{base}/v1/chat/completions", json=CHAT, headers=pay)
    expect(r.status_code == 200, f"expected 200, got {r.status_code}: {r.text}")
    answer = r.json()["choices"][0]["message"]["content"]
    say(f"-> {r.status_code}; the model says: {short(answer, 60, 0)!r}", 3)
    calls = [p for p in fac.paths() if not p.endswith("/supported")]
    say(f"aroutd verified it locally, then asked the facilitator: {', '.join(calls)}", 3)
    paid = decoded(r.headers.get("payment-response"), "PAYMENT-RESPONSE")
    expect(paid.get("success") is True, f"PAYMENT-RESPONSE says {paid}")
    say(
        f"PAYMENT-RESPONSE: success {paid['success']}, transaction {short(paid['transaction'])},", 3
    )
    say(f"network {paid['network']}, payer {paid['payer']},", 5)
    say(f"jwt {short(paid['jwt'], 16, 8)} ({len(paid['jwt'])} characters)", 5)
    jwt: str = paid["jwt"]
    return jwt


def step_ledger(http: Any, base: str, jwt: str) -> None:
    say()
    say("4. The wallet JWT from PAYMENT-RESPONSE, as a Bearer token")
    bearer = {"authorization": f"Bearer {jwt}"}
    r = http.get(f"{base}/api/v1/balance", headers=bearer)
    expect(r.status_code == 200, f"balance: {r.status_code} {r.text}")
    say(
        f"GET /api/v1/balance -> {r.status_code}: {r.json()['balance']:.6f} {r.json()['currency']}",
        3,
    )
    deadline = time.monotonic() + 5  # the usage line is committed within 100 ms
    while True:
        r = http.get(f"{base}/api/v1/transactions", headers=bearer)
        lines = r.json()["transactions"] if r.status_code == 200 else []
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    expect([t["type"] for t in lines] == ["usage", "credit"], f"transactions: {lines}")
    say(f"GET /api/v1/transactions -> {r.status_code}: {len(lines)} lines, newest first:", 3)
    for t in lines:
        tx = f", transaction {short(t['transaction'])}" if t.get("transaction") else ""
        say(f"{t['type']:6s} {t['amount']:+.6f} USD  {t['description']}{tx}", 5)


def step_replay(http: Any, base: str, pay: dict[str, str], fac: FakeFacilitator) -> None:
    say()
    say("5. The same PAYMENT-SIGNATURE once more (a replay)")
    settles = fac.paths().count("/settle")
    r = http.post(f"{base}/v1/chat/completions", json=CHAT, headers=pay)
    expect(r.status_code == 402, f"expected 402, got {r.status_code}: {r.text}")
    reason = decoded(r.headers.get("payment-required"), "PAYMENT-REQUIRED")["error"]
    say(f"-> {r.status_code} {r.json()['error']['message']}; PAYMENT-REQUIRED.error: {reason}", 3)
    expect(fac.paths().count("/settle") == settles, "the replay reached the facilitator")
    say("refused from the state store's claim, before the facilitator was asked", 3)


# --- the whole ----------------------------------------------------------------------------


def walk() -> None:
    import httpx
    from eth_account import Account

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aroutd-x402-")))
        fac = stack.enter_context(fake_facilitator())
        base = start(stack, folder, fac)
        account = Account.create()  # a throwaway key, never funded: the facilitator is fake
        say(f"aroutd {base}, x402 on {NETWORK} (Base Sepolia); fake facilitator {fac.url}")
        say(f"throwaway wallet {account.address}; folder {folder}")
        say()
        http = stack.enter_context(httpx.Client(timeout=30))
        challenge = step_challenge(http, base)
        pay = step_sign(challenge, account)
        jwt = step_paid(http, base, pay, fac)
        step_ledger(http, base, jwt)
        step_replay(http, base, pay, fac)
        say()
        say("ok: challenged, paid, served, credited, and the replay refused")


def _raise(exc: Callable[[], BaseException]) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        raise exc()

    return handler


def main() -> int:
    missing = [pip for module, pip in NEEDED.items() if find_spec(module) is None]
    if missing:
        say(f"x402 walk-through: needs {', '.join(missing)} (aroutd's test extras):")
        say("scripts/setup test   (or: pip install -e '.[test]')", 4)
        return 1
    signal.signal(signal.SIGTERM, _raise(KeyboardInterrupt))
    signal.signal(signal.SIGALRM, _raise(lambda: Failed(f"not done within {TIMEOUT_S} s")))
    signal.alarm(TIMEOUT_S)
    try:
        walk()
    except Failed as exc:
        print(f"x402 walk-through failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("x402 walk-through: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
