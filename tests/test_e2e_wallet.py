"""End to end: wallet sign-in (SPEC §8) against the real daemon, then the proxy with the JWT,
spending the wallet's balance (SPEC §9: 402 ``insufficient credits`` at or below zero,
``/api/v1/balance``, ``/api/v1/transactions``, credited with ``aroutd wallets credit``).

Headers come from the real x402 package (create_siwx_payload / encode_siwx_header,
EVM with eth-account, Solana with a solders keypair) and hand-built in the
ARouter SDK form ({message, signature}).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from solders.keypair import Keypair
from x402.extensions import sign_in_with_x as siwx

from .e2e import Daemon, aroutd, cli, mock_upstream, write_config
from .support import Keys

PUBLIC = "http://127.0.0.1:8080"  # write_config's public_url: the domain messages must name
DOMAIN = "127.0.0.1:8080"
SOL_MAIN = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
WALLET_SCOPE = '\n[wallet]\njwt_secret_file = "state/jwt.secret"\nallowed_providers = ["openai"]\n'
PRICING = '\n[pricing."openai/gpt-4o-mini"]\ninput = 1000.0\noutput = 1000.0\n'  # 0.001 USD a token


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp: Path = tmp_path_factory.mktemp("wallet")
    keys = Keys()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp, up_port, keys)
        cfg.write_text(
            cfg.read_text().replace(
                '[wallet]\njwt_secret_file = "state/jwt.secret"\n', WALLET_SCOPE
            )
            + PRICING
        )
        with aroutd(cfg, keys) as daemon:
            yield daemon


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _SoldersSigner:
    """The Solana signer shape x402 expects, around a solders Keypair."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self.address = str(keypair.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        return bytes(self.keypair.sign_message(message))


def x402_header(chain: str, signer: Any, **extra: str) -> str:
    info = {
        "domain": DOMAIN,
        "uri": f"{PUBLIC}/v1/x402/auth",
        "version": "1",
        "nonce": secrets.token_hex(16),
        "issuedAt": _now(),
        "chainId": chain,
        "type": "ed25519" if chain.startswith("solana:") else "eip191",
        **extra,
    }
    payload = asyncio.run(siwx.create_siwx_payload(info, signer, info["uri"]))
    return str(siwx.encode_siwx_header(payload))


def arouter_text(address: str, *, solana: bool = False, domain: str = DOMAIN) -> str:
    label, chain_id = ("Solana", SOL_MAIN) if solana else ("Ethereum", "8453")
    return (
        f"{domain} wants you to sign in with your {label} account:\n{address}\n\n"
        f"Sign in to ARouter with your wallet\n\nURI: {PUBLIC}/v1/x402/auth\nVersion: 1\n"
        f"Chain ID: {chain_id}\nNonce: {secrets.token_hex(16)}\nIssued At: {_now()}"
    )


def arouter_header(text: str, signature: str) -> str:
    return base64.b64encode(json.dumps({"message": text, "signature": signature}).encode()).decode()


def evm_sign(account: Any, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def sign_in(d: Daemon, header: str) -> httpx.Response:
    return httpx.post(
        f"{d.base}/v1/x402/auth",
        headers={"SIGN-IN-WITH-X": header, "content-type": "application/json"},
    )


def _chat(d: Daemon, jwt: str, model: str = "gpt-4o-mini") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        f"{d.base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {jwt}"}
    )


def _get(d: Daemon, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{d.base}{path}", headers={"authorization": f"Bearer {token}"})


def _balance(d: Daemon, token: str) -> float | None:
    r = _get(d, "/api/v1/balance", token)
    assert r.status_code == 200, r.text
    assert r.json()["currency"] == "USD"
    value: float | None = r.json()["balance"]
    return value


def credit(d: Daemon, jwt: str, account: str, usd: str) -> None:
    """``aroutd wallets credit`` on the daemon's state file, then wait (bounded) for the
    running daemon to see it (its usage poll)."""
    before = _balance(d, jwt) or 0.0
    done = cli(d.config, "wallets", "credit", account, usd, "--note", "test grant")
    assert done.returncode == 0, done.stderr
    assert done.stdout.lower().startswith(f"credited {float(usd):g} usd to {account.lower()}:")
    deadline = time.monotonic() + 5
    while (_balance(d, jwt) or 0.0) < before + float(usd) - 1e-9:
        assert time.monotonic() < deadline, "the daemon never saw the credit"
        time.sleep(0.05)


def _cost(chat: httpx.Response) -> float:
    usage = chat.json()["usage"]
    return float(usage["prompt_tokens"] + usage["completion_tokens"]) * 0.001


def test_x402_evm_sign_in_then_proxy(d: Daemon) -> None:
    account = Account.create()
    r = sign_in(d, x402_header("eip155:8453", account))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant_id"] == f"wallet:eip155:8453:{account.address}"
    assert body["key_id"]
    # A wallet that signed in but never paid has nothing to spend (ARouter's behaviour).
    assert _error(_chat(d, body["jwt"])) == (402, "payment_required", "insufficient credits")
    assert _balance(d, body["jwt"]) == 0.0
    # the operator's spelling need not be EIP-55: the account is canonicalized
    credit(d, body["jwt"], f"eip155:8453:{account.address.lower()}", "1")
    chat = _chat(d, body["jwt"])
    assert chat.status_code == 200
    assert chat.json()["usage"]["completion_tokens"] == 7
    assert _balance(d, body["jwt"]) == pytest.approx(1 - _cost(chat))
    echo = httpx.post(
        f"{d.base}/v1/mock/echo", content=b"{}", headers={"authorization": f"Bearer {body['jwt']}"}
    ).json()
    seen = {k.lower(): v for k, v in echo["headers"]}
    assert seen["x-arouter-wallet"] == f"eip155:8453:{account.address}"
    assert seen["x-arouter-tenant"] == body["tenant_id"]


def test_x402_solana_sign_in_then_proxy(d: Daemon) -> None:
    kp = Keypair()
    r = sign_in(d, x402_header(f"solana:{SOL_MAIN}", _SoldersSigner(kp)))
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == f"wallet:solana:{SOL_MAIN}:{kp.pubkey()}"
    credit(d, r.json()["jwt"], f"solana:{SOL_MAIN}:{kp.pubkey()}", "0.5")
    assert _chat(d, r.json()["jwt"]).status_code == 200


def test_a_balance_is_spent_down_to_402_and_logged(d: Daemon) -> None:
    account = Account.create()
    jwt = sign_in(d, x402_header("eip155:8453", account)).json()["jwt"]
    caip10 = f"eip155:8453:{account.address}"
    credit(d, jwt, caip10, "0.03")
    served = []
    for _ in range(5):
        chat = _chat(d, jwt)
        if chat.status_code != 200:
            break
        served.append(chat)
    # every request costs the same: served while the balance is above zero, then refused
    assert len(served) == math.ceil(0.03 / _cost(served[0]) - 1e-9) >= 2
    assert _error(chat) == (402, "payment_required", "insufficient credits")
    spent = sum(_cost(c) for c in served)
    assert _balance(d, jwt) == pytest.approx(0.03 - spent) and 0.03 - spent <= 0
    # the log: newest first, every debit with its request id, then the credit
    time.sleep(0.3)  # debits are committed within 100 ms of each response's end
    lines = _get(d, "/api/v1/transactions", jwt).json()["transactions"]
    debits, credits = lines[: len(served)], lines[len(served) :]
    assert [t["request_id"] for t in debits] == [c.headers["x-request-id"] for c in served][::-1]
    assert all(t["type"] == "usage" and t["amount"] < 0 for t in debits)
    assert [t["amount"] for t in debits] == pytest.approx([-_cost(c) for c in served][::-1])
    prompt = served[-1].json()["usage"]["prompt_tokens"]
    assert (
        debits[0]["description"] == f"openai/gpt-4o-mini - {prompt} input tokens, 7 output tokens"
    )
    assert [(t["type"], t["amount"], t["description"]) for t in credits] == [
        ("credit", 0.03, "test grant")
    ]
    page = _get(d, "/api/v1/transactions?offset=1&page_size=1", jwt).json()["transactions"]
    assert page == lines[1:2]
    shown = cli(d.config, "wallets", "show", caip10)
    assert shown.returncode == 0 and f"{caip10}\tbalance -" in shown.stdout


def test_balance_of_api_keys_and_bad_accounts(d: Daemon) -> None:
    assert _balance(d, d.keys.api) is None  # no limit: no balance to show
    assert _get(d, "/api/v1/transactions", d.keys.api).json() == {"transactions": []}
    r = _get(d, "/api/v1/balance", d.keys.mgmt)
    assert r.status_code == 403
    r = httpx.post(f"{d.base}/api/v1/balance", headers={"authorization": f"Bearer {d.keys.api}"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    for bad in ("eip155:8453:0x123", "bitcoin:x:y", "eip155:8453:0x" + "aB" * 20):
        done = cli(d.config, "wallets", "credit", bad, "1")
        assert (
            done.returncode == 1 and "account: " in done.stderr and "Traceback" not in done.stderr
        )
    good = f"eip155:8453:{Account.create().address}"
    for amount in ("0", "-1", "nan", "inf", "1e9", "ten"):
        done = cli(d.config, "wallets", "credit", good, amount)
        assert done.returncode == 1 and "amount: " in done.stderr, (amount, done.stderr)


def test_arouter_sdk_form_both_chains(d: Daemon) -> None:
    account = Account.create()
    text = arouter_text(account.address.lower())
    r = sign_in(d, arouter_header(text, evm_sign(account, text)))
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == f"wallet:eip155:8453:{account.address}"  # EIP-55 in CAIP-10
    kp = Keypair()
    text = arouter_text(str(kp.pubkey()), solana=True)
    sig = base64.b64encode(bytes(kp.sign_message(text.encode()))).decode()
    r = sign_in(d, arouter_header(text, sig))
    assert r.status_code == 200, r.text


def _error(r: httpx.Response) -> tuple[int, str, str]:
    e = r.json()["error"]
    return r.status_code, e["type"], e["message"]


def test_replay_other_signer_and_domain(d: Daemon) -> None:
    account = Account.create()
    header = x402_header("eip155:8453", account)
    assert sign_in(d, header).status_code == 200
    assert _error(sign_in(d, header)) == (401, "authentication_error", "nonce already used")
    text = arouter_text(account.address)
    forged = arouter_header(text, evm_sign(Account.create(), text))
    assert _error(sign_in(d, forged)) == (401, "authentication_error", "invalid signature")
    text = arouter_text(account.address, domain="evil.example")
    assert _error(sign_in(d, arouter_header(text, evm_sign(account, text))))[2] == "domain mismatch"
    assert _error(sign_in(d, x402_header("eip155:1", account)))[2] == "unsupported chain"
    assert _error(sign_in(d, "%%%not-base64"))[:2] == (400, "invalid_request_error")
    r = httpx.post(f"{d.base}/v1/x402/auth")
    assert _error(r)[:2] == (400, "invalid_request_error")


def test_wallet_scope_and_management_refusal(d: Daemon) -> None:
    jwt = sign_in(d, x402_header("eip155:8453", Account.create())).json()["jwt"]
    body = {
        "model": "claude-test",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = httpx.post(f"{d.base}/v1/messages", json=body, headers={"authorization": f"Bearer {jwt}"})
    assert _error(r) == (
        403,
        "forbidden_error",
        "provider 'anthropic' is not allowed for this API key",
    )
    r = httpx.get(f"{d.base}/api/v1/keys", headers={"authorization": f"Bearer {jwt}"})
    assert _error(r) == (403, "forbidden_error", "this endpoint requires a management key")
    tampered = jwt[:-2] + ("AA" if not jwt.endswith("AA") else "BB")
    assert _error(_chat(d, tampered)) == (401, "authentication_error", "invalid or expired token")


def test_nonce_and_jwt_survive_a_restart(tmp_path: Path) -> None:
    keys = Keys()
    account = Account.create()
    header = x402_header("eip155:8453", account)
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        cfg.write_text(cfg.read_text() + PRICING)
        with aroutd(cfg, keys) as first:
            jwt = sign_in(first, header).json()["jwt"]
            credit(first, jwt, f"eip155:8453:{account.address}", "2")
            assert _chat(first, jwt).status_code == 200
            left = _balance(first, jwt)
            assert first.proc.stop() == 0
        with aroutd(cfg, keys) as second:
            assert _error(sign_in(second, header))[2] == "nonce already used"
            assert _balance(second, jwt) == left  # the balance outlives the process
            assert _chat(second, jwt).status_code == 200
            left = _balance(second, jwt)
            time.sleep(0.2)  # usage is committed within 100 ms of a response's end
            second.proc.stop(signal.SIGKILL)
        with aroutd(cfg, keys) as third:
            assert _balance(third, jwt) == left  # nothing lost to kill -9
            lines = _get(third, "/api/v1/transactions", jwt).json()["transactions"]
            assert [t["type"] for t in lines] == ["usage", "usage", "credit"]
        secret = cfg.parent / "state" / "jwt.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
