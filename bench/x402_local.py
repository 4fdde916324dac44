"""bench_x402's first part: x402 payments checked locally, in this process, on one core.

The payloads are real: an EIP-3009 authorization signed by the x402 package's client
(eth-account) for the challenge aroutd's own ``payment_required`` builds, and a Solana v0
transaction built with solders by tests/test_x402_solana.py's ``Build`` (so this needs
the test extras). Each case is timed with bench_siwx's ``rate`` (calls per second of
wall clock and of this thread's CPU time), R repeats in an order rotated per repeat.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from bench.bench_siwx import rate
from bench.compare import figure, rotated

__all__ = ["CASES", "local_checks"]

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
RESOURCE = {"url": "http://127.0.0.1:8080/v1/chat/completions", "description": "", "mimeType": ""}
CASES = {
    "evm_decode": "EVM: decode_payment_signature (the header)",
    "evm_verify": "EVM: verify_evm (EIP-712 digest + ecrecover)",
    "evm_check": "EVM: check_payment (select + verify_evm)",
    "solana_decode": "Solana: decode_payment_signature (the header)",
    "solana_verify": "Solana: verify_solana (v0 decode + layout + ed25519)",
    "solana_check": "Solana: check_payment (select + verify_solana)",
}


def evm_payment() -> tuple[str, list[dict[str, Any]]]:
    """A PAYMENT-SIGNATURE signed by x402's client for aroutd's 402, and the accepts."""
    from eth_account import Account
    from x402 import x402ClientSync
    from x402.http import x402HTTPClientSync
    from x402.mechanisms.evm.exact import register_exact_evm_client

    from aroutd.config.values import X402Config
    from aroutd.x402.requirements import encode_header, payment_required

    cfg = X402Config(enabled=True, pay_to_evm=PAY_TO, networks=("eip155:84532",))
    required = payment_required(
        cfg,
        resource_url=RESOURCE["url"],
        description="",
        mime_type="",
        error=None,
        solana_fee_payers={},
        siwx=None,
    )
    header = encode_header(required)
    client = register_exact_evm_client(x402ClientSync(), Account.create())
    http = x402HTTPClientSync(client)
    parsed = http.get_payment_required_response(
        lambda n: header if n.upper() == "PAYMENT-REQUIRED" else None, b"{}"
    )
    sent = http.encode_payment_signature_header(client.create_payment_payload(parsed))
    return sent["PAYMENT-SIGNATURE"], required["accepts"]


def solana_payment() -> tuple[str, list[dict[str, Any]]]:
    """A PAYMENT-SIGNATURE with a solders-built transaction, and the one requirement."""
    from tests.test_x402_solana import Build, requirement

    accepted = requirement()
    payload = {
        "x402Version": 2,
        "accepted": accepted,
        "payload": {"transaction": base64.b64encode(Build().bytes()).decode()},
    }
    return base64.b64encode(json.dumps(payload).encode()).decode(), [accepted]


def cases() -> tuple[dict[str, Callable[[int], object]], bool]:
    """The timed calls, and whether each of them verifies (checked once, untimed)."""
    from aroutd.x402.check import CheckedPayment, check_payment
    from aroutd.x402.evm import verify_evm
    from aroutd.x402.payload import decode_payment_signature, select_requirement
    from aroutd.x402.reasons import Verified
    from aroutd.x402.solana import verify_solana

    now = int(time.time())
    evm_header, evm_accepts = evm_payment()
    sol_header, sol_accepts = solana_payment()
    evm, sol = decode_payment_signature(evm_header), decode_payment_signature(sol_header)
    evm_req, sol_req = select_requirement(evm, evm_accepts), select_requirement(sol, sol_accepts)
    assert evm_req is not None and sol_req is not None
    calls: dict[str, Callable[[int], object]] = {
        "evm_decode": lambda i: decode_payment_signature(evm_header),
        "evm_verify": lambda i: verify_evm(evm, evm_req, now),
        "evm_check": lambda i: check_payment(evm, evm_accepts, RESOURCE, now),
        "solana_decode": lambda i: decode_payment_signature(sol_header),
        "solana_verify": lambda i: verify_solana(sol, sol_req),
        "solana_check": lambda i: check_payment(sol, sol_accepts, RESOURCE, now),
    }
    ok = all(isinstance(calls[k](0), Verified) for k in ("evm_verify", "solana_verify"))
    ok = ok and all(isinstance(calls[k](0), CheckedPayment) for k in ("evm_check", "solana_check"))
    return calls, ok


def local_checks(repeats: int, seconds: float) -> dict[str, Any]:
    """Per case: CPU calls/s, µs per call (of the CPU rate) and wall calls/s, as figures."""
    calls, ok = cases()
    names = list(calls)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for repeat in range(repeats):
        for name in rotated(names, repeat):
            w, c = rate(calls[name], seconds)
            wall[name].append(w)
            cpu[name].append(c)
    return {
        "cases": {
            n: {
                "label": CASES[n],
                "cpu_per_s": figure(cpu[n]),
                "us_per_call": figure([1e6 / c for c in cpu[n]], 1),
                "wall_per_s": figure(wall[n]),
            }
            for n in names
        },
        "all_ok": ok,
    }
