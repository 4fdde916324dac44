"""x402 benchmark (SPEC §10): what a payment costs, checked locally and paid end to end.

    python -m bench.bench_x402 [--quick] [--repeats R] [--keep] [--out DIR] [--no-pin]

It needs aroutd's test extras (``scripts/setup test``): x402 and eth-account sign the EVM
payments, solders builds the Solana transactions (as tests/test_x402_solana.py does,
whose builder it imports). Figures: the median (min–max) of R repeats, the cases of a
repeat interleaved in an order rotated per repeat.

1. Local verification, in this process, pinned to one core: ``decode_payment_signature``
   of the header, ``verify_evm`` and ``check_payment`` (requirement selection + verify)
   on a real eth-account-signed EIP-3009 payload (x402's client, paying the challenge
   aroutd's own ``payment_required`` builds), and the same for Solana (``verify_solana``
   on a solders-built v0 transaction). Calls per second of this thread's CPU time (the
   one-core capacity; the wall-clock rate too) and µs per call.
2. Round trips at c=1, one keep-alive ``http.client`` connection per run, against one
   aroutd (``[x402] enabled`` on Base Sepolia, pricing for the bench model) pinned to core
   0, with the fixed upstream and the fake facilitator (``aroutd mock-facilitator``, which
   answers at once) on core 1 with this client: a plain API-key request; a paid request
   alone (a fresh ``PAYMENT-SIGNATURE`` each, signed before the run: the client's signing
   is not timed); the 402 challenge fetch plus the paid retry; and the facilitator on its
   own, ``POST /verify`` + ``POST /settle`` straight from this client. p50/p99, and the
   paid ones over the plain one (ratio per repeat). A paid request is checked locally,
   claimed in the state store (sqlite), verified and settled by the facilitator,
   recorded, credited, then served.

Checks: every local case verifies; every plain answer is 200, every paid one 200 with
``PAYMENT-RESPONSE``, every challenge 402, every facilitator answer 200; a replayed
payment is 402 ``invalid_exact_evm_nonce_already_used``. Exit status 1 when a check
fails. Output: markdown on stdout and ``bench/out/x402-DATE/report.json``.
Full: about 90 s; ``--quick``: about 15 s (2 cores).
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.aroutd_setup import ConfigOptions, new_api_key
from bench.compare import Condition, interleaved, script_main
from bench.procs import Children, cpu_counters, other_load
from bench.stats import summary_us
from bench.targets import Target, start_aroutd, start_fixed_upstream, start_mock_facilitator
from bench.upstream import REQUEST_BODY
from bench.x402_local import local_checks
from bench.x402_report import LABELS, render, summarize

__all__ = ["main"]

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NETWORK = "eip155:84532"
X402_TOML = f"""
[x402]
enabled = true
facilitator_url = "FACILITATOR"
pay_to_evm = "{PAY_TO}"
networks = ["{NETWORK}"]
topup_usd = 5.0
topup_tiers_usd = [1.0, 5.0, 10.0]

[pricing."openai/gpt-4o-mini"]
input = 0.15
output = 0.60
"""
KINDS = ("plain", "paid", "challenge", "facilitator")
EXPECTED = {"plain": "200", "paid": "200", "challenge": "402+200", "facilitator": "200+200"}
REPLAYED = "invalid_exact_evm_nonce_already_used"
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    name: str
    repeats: int
    local_seconds: float  # one rate measurement of a local check
    n: int  # requests per round-trip run
    warmup: int
    run_seconds: float  # bound of one round-trip run


MODES = {
    "full": Mode(name="full", repeats=5, local_seconds=1.0, n=500, warmup=50, run_seconds=60.0),
    "quick": Mode(name="quick", repeats=3, local_seconds=0.3, n=120, warmup=15, run_seconds=30.0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Trip(Condition):
    kind: str  # one of KINDS


class Signer:
    """Fresh ``PAYMENT-SIGNATURE`` headers for aroutd's 402, from one throwaway account,
    signed by the x402 package's client (``x402ClientSync``, the $1 tier)."""

    def __init__(self, challenge: str) -> None:
        from eth_account import Account
        from x402 import x402ClientSync
        from x402.http import x402HTTPClientSync
        from x402.mechanisms.evm.exact import register_exact_evm_client

        self.client = register_exact_evm_client(x402ClientSync(), Account.create())
        self.http = x402HTTPClientSync(self.client)
        self.required = self.http.get_payment_required_response(
            lambda n: challenge if n.upper() == "PAYMENT-REQUIRED" else None, b"{}"
        )

    def sign(self, count: int) -> list[str]:
        return [
            self.http.encode_payment_signature_header(
                self.client.create_payment_payload(self.required)
            )["PAYMENT-SIGNATURE"]
            for _ in range(count)
        ]


@dataclass(slots=True)
class Client:
    """One keep-alive connection; ``send`` answers the status and the headers wanted."""

    conn: http.client.HTTPConnection

    def send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        self.conn.request("POST", path, body=body, headers=headers)
        response = self.conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}


def _paid(client: Client, pay: str) -> str:
    status, headers = client.send(
        "/v1/chat/completions",
        REQUEST_BODY,
        {"Content-Type": "application/json", "PAYMENT-SIGNATURE": pay},
    )
    return str(status) if "payment-response" in headers else f"{status} without PAYMENT-RESPONSE"


def one_request(kind: str, client: Client, api: dict[str, str], pay: str, fac: bytes) -> str:
    """One exchange of ``kind``; its status (``"402+200"`` for two in a row)."""
    json_only = {"Content-Type": "application/json"}
    if kind == "plain":
        return str(client.send("/v1/chat/completions", REQUEST_BODY, json_only | api)[0])
    if kind == "paid":
        return _paid(client, pay)
    if kind == "challenge":
        status, _ = client.send("/v1/chat/completions", REQUEST_BODY, json_only)
        return f"{status}+{_paid(client, pay)}"
    verify, _ = client.send("/verify", fac, json_only)
    return f"{verify}+{client.send('/settle', fac, json_only)[0]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bench:
    """What every round-trip run needs: the api key, a signer, the facilitator's body."""

    mode: Mode
    api: dict[str, str]
    signer: Signer
    facilitator_body: bytes

    def run(self, trip: Trip, *, n: int | None = None, warmup: int | None = None) -> dict[str, Any]:
        n = self.mode.n if n is None else n
        warmup = self.mode.warmup if warmup is None else warmup
        paying = trip.kind in ("paid", "challenge")
        pays = self.signer.sign(n + warmup) if paying else [""] * (n + warmup)
        conn = http.client.HTTPConnection("127.0.0.1", trip.target.port, timeout=REQUEST_TIMEOUT_S)
        client, samples, statuses = Client(conn), [], Counter[str]()
        deadline = time.monotonic() + self.mode.run_seconds
        try:
            for i, pay in enumerate(pays):
                start = time.perf_counter_ns()
                status = one_request(trip.kind, client, self.api, pay, self.facilitator_body)
                if i >= warmup:
                    samples.append(time.perf_counter_ns() - start)
                    statuses[status] += 1
                if time.monotonic() > deadline:
                    break
        finally:
            conn.close()
        return {
            "latency_us": summary_us(samples),
            "statuses": dict(statuses),
            "timed_out": len(samples) < n,
        }


def _challenge(aroutd: Target) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", aroutd.port, timeout=REQUEST_TIMEOUT_S)
    try:
        status, headers = Client(conn).send(
            aroutd.path, REQUEST_BODY, {"Content-Type": "application/json"}
        )
    finally:
        conn.close()
    if status != 402 or "payment-required" not in headers:
        raise RuntimeError(f"no 402 challenge from aroutd: {status}")
    return headers["payment-required"]


def _facilitator_body(signer: Signer) -> bytes:
    """What aroutd sends to /verify and /settle for one payment (the fake checks nothing)."""
    from aroutd.x402.facilitator import request_body

    payload = json.loads(base64.b64decode(signer.sign(1)[0]))
    return request_body(payload, payload["accepted"])


def _replay(aroutd: Target, pay: str) -> str:
    """A payment already used, sent again: the reason aroutd's 402 gives."""
    conn = http.client.HTTPConnection("127.0.0.1", aroutd.port, timeout=REQUEST_TIMEOUT_S)
    try:
        client = Client(conn)
        _paid(client, pay)
        status, headers = client.send(
            aroutd.path,
            REQUEST_BODY,
            {"Content-Type": "application/json", "PAYMENT-SIGNATURE": pay},
        )
    finally:
        conn.close()
    reason = json.loads(base64.b64decode(headers.get("payment-required", "e30=")))
    return f"{status} {reason.get('error', '')}"


def trips(aroutd: Target, facilitator: Target) -> list[Trip]:
    return [
        Trip(
            name=k,
            kind=k,
            label=LABELS[k],
            target=facilitator if k == "facilitator" else aroutd,
            headers=(),
        )
        for k in KINDS
    ]


def round_trips(mode: Mode, work: Path, notes: list[str]) -> dict[str, Any]:
    children, api_key, results = Children(log_dir=work / "logs"), new_api_key(), {}
    try:
        upstream = start_fixed_upstream(children, work)
        results["upstream"] = upstream.kind
        facilitator = start_mock_facilitator(children)
        extra = X402_TOML.replace("FACILITATOR", f"http://127.0.0.1:{facilitator.port}")
        aroutd, _files, startup_s, _ = start_aroutd(
            children, work / "aroutd", upstream, api_key, options=ConfigOptions(extra_toml=extra)
        )
        notes.append(f"aroutd started in {startup_s:.2f} s")
        signer = Signer(_challenge(aroutd))
        bench = Bench(
            mode=mode,
            api={"Authorization": f"Bearer {api_key}"},
            signer=signer,
            facilitator_body=_facilitator_body(signer),
        )
        runs = trips(aroutd, facilitator)
        for trip in runs:  # warm-up, unmeasured: connections, code paths, the store
            bench.run(trip, n=20, warmup=0)
        started, before = time.monotonic(), cpu_counters()
        results["runs"] = interleaved(runs, mode.repeats, bench.run)
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine_load"] = other_load(before, cpu_counters())
        results["replay"] = _replay(aroutd, signer.sign(1)[0])
    finally:
        children.close()
    return results


def run(mode: Mode, work: Path, notes: list[str]) -> dict[str, Any]:
    local = local_checks(mode.repeats, mode.local_seconds)
    trips_raw = round_trips(mode, work, notes)
    results: dict[str, Any] = {"upstream": trips_raw.pop("upstream"), "local": local}
    results |= summarize(trips_raw, EXPECTED, REPLAYED)
    results["checks"]["all_ok"] = results["checks"]["all_ok"] and local["all_ok"]
    return results


def main(argv: list[str] | None = None) -> int:
    data = script_main(
        argv,
        slug="x402",
        doc=__doc__ or "",
        modes=MODES,
        run=run,
        render=render,
        quick_help="fewer requests and shorter local runs (~15 s)",
    )
    return 0 if data["results"]["checks"]["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
