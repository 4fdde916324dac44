"""Micro-benchmark of the wallet sign-in core, one core, no I/O except the sqlite case.

    python -m bench.bench_siwx [--seconds 1.0]

Measures, each for about ``--seconds``:

- decode_header + verify_signin for an EVM header (EIP-191 recovery) and a Solana one
  (ed25519), i.e. everything of ``POST /v1/x402/auth`` but the nonce write;
- the whole sign_in against a real sqlite store in a temporary folder (synchronous=FULL:
  fsync'd writes for the nonce, plus the JWT), ``--signin-calls`` fresh headers;
- WalletTokens.verify: uncached (PyJWT decode, a new token each time) and cached (the
  steady state of a wallet's requests: sha256 + dict lookup).

Signatures are made beforehand with eth-account and solders, outside the timed loops.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct
from solders.keypair import Keypair

from aroutd.auth.signin import SigninSettings, sign_in, verify_signin
from aroutd.auth.siwx import decode_header
from aroutd.auth.walletjwt import WalletTokens
from aroutd.store.sqlite import SqliteStore

PUBLIC_URL = "https://api.example.com"
NETWORKS = ("eip155:8453", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")
NOW = datetime(2026, 3, 20, 12, 0, 30, tzinfo=UTC)
EVM = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
SOL = Keypair.from_seed(bytes(range(1, 33)))


def _text(address: str, label: str, chain_id: str, nonce: str) -> str:
    return (
        f"api.example.com wants you to sign in with your {label} account:\n{address}\n\n"
        "Sign in to ARouter with your wallet\n\nURI: https://api.example.com/v1/x402/auth\n"
        f"Version: 1\nChain ID: {chain_id}\nNonce: {nonce}\nIssued At: 2026-03-20T12:00:00Z"
    )


def evm_header(nonce: str) -> bytes:
    text = _text(EVM.address, "Ethereum", "8453", nonce)
    sig = "0x" + bytes(EVM.sign_message(encode_defunct(text=text)).signature).hex()
    return base64.b64encode(json.dumps({"message": text, "signature": sig}).encode())


def sol_header(nonce: str) -> bytes:
    text = _text(str(SOL.pubkey()), "Solana", NETWORKS[1].split(":")[1], nonce)
    sig = base64.b64encode(bytes(SOL.sign_message(text.encode()))).decode()
    return base64.b64encode(json.dumps({"message": text, "signature": sig}).encode())


def rate(fn: Callable[[int], object], seconds: float, batch: int = 50) -> tuple[float, float]:
    """Calls per second of fn(i), i counting up, for about ``seconds``: (by wall clock, by
    this thread's CPU time). On a busy machine the CPU figure is the one-core capacity."""
    fn(0)  # warm up
    done, start, cpu = 0, time.perf_counter(), time.thread_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn(done)
            done += 1
    return done / elapsed, done / (time.thread_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--signin-calls", type=int, default=300)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    settings = SigninSettings(public_url=PUBLIC_URL, networks=NETWORKS, max_age_s=300)

    def verify(header: bytes) -> object:
        return verify_signin(
            decode_header(header), public_url=PUBLIC_URL, networks=NETWORKS, max_age_s=300, now=NOW
        )

    evm, sol = evm_header(secrets.token_hex(16)), sol_header(secrets.token_hex(16))
    tokens = WalletTokens(secret=secrets.token_bytes(32), issuer=PUBLIC_URL, ttl_s=3600)
    results: dict[str, tuple[float, float]] = {}

    results["decode_header_evm"] = rate(lambda i: decode_header(evm), args.seconds)
    results["verify_signin_evm"] = rate(lambda i: verify(evm), args.seconds)
    results["verify_signin_solana"] = rate(lambda i: verify(sol), args.seconds)

    # sign_in needs a fresh nonce per call: sign them before the clock starts.
    fresh = [evm_header(secrets.token_hex(16)) for _ in range(args.signin_calls)]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore.open(Path(tmp) / "state" / "aroutd.db")
        start, cpu = time.perf_counter(), time.thread_time()
        for header in fresh:
            sign_in(header, settings=settings, store=store, tokens=tokens, now=NOW)
        results["sign_in_evm_sqlite_fsync"] = (
            len(fresh) / (time.perf_counter() - start),
            len(fresh) / (time.thread_time() - cpu),
        )
        store.close()

    # Uncached: a one-entry cache and two tokens taken in turn, so every call decodes.
    uncached = WalletTokens(secret=b"u" * 32, issuer=PUBLIC_URL, ttl_s=3600, cache_size=1)
    pair = [uncached.issue(f"eip155:8453:0x{i:040x}", NOW) for i in range(2)]
    t_now = NOW.timestamp()
    results["jwt_verify_uncached"] = rate(
        lambda i: uncached.verify(pair[i % 2], t_now), args.seconds
    )
    hot = tokens.issue("eip155:8453:0x" + "ab" * 20, NOW)
    tokens.verify(hot, t_now)
    results["jwt_verify_cached"] = rate(lambda i: tokens.verify(hot, t_now), args.seconds)

    print(f"{'':28s} {'wall /s':>10s} {'us/call':>9s} {'cpu /s':>10s} {'us/call':>9s}")
    for name, (wall, cpu) in results.items():
        print(f"{name:28s} {wall:10,.0f} {1e6 / wall:9.2f} {cpu:10,.0f} {1e6 / cpu:9.2f}")


if __name__ == "__main__":
    main()
