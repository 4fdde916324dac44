"""End to end: wallet sign-in (SPEC §8) against the real daemon, then the proxy with the JWT.

Headers come from the real x402 package (create_siwx_payload / encode_siwx_header,
EVM with eth-account, Solana with a solders keypair) and hand-built in the
ARouter SDK form ({message, signature}).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
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

from .e2e import Daemon, aroutd, mock_upstream, write_config
from .support import Keys

PUBLIC = "http://127.0.0.1:8080"  # write_config's public_url: the domain messages must name
DOMAIN = "127.0.0.1:8080"
SOL_MAIN = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
WALLET_SCOPE = '\n[wallet]\njwt_secret_file = "state/jwt.secret"\nallowed_providers = ["openai"]\n'


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


def test_x402_evm_sign_in_then_proxy(d: Daemon) -> None:
    account = Account.create()
    r = sign_in(d, x402_header("eip155:8453", account))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant_id"] == f"wallet:eip155:8453:{account.address}"
    assert body["key_id"]
    chat = _chat(d, body["jwt"])
    assert chat.status_code == 200
    assert chat.json()["usage"]["completion_tokens"] == 7
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
    assert _chat(d, r.json()["jwt"]).status_code == 200


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
        with aroutd(cfg, keys) as first:
            jwt = sign_in(first, header).json()["jwt"]
            assert first.proc.stop() == 0
        with aroutd(cfg, keys) as second:
            assert _error(sign_in(second, header))[2] == "nonce already used"
            assert _chat(second, jwt).status_code == 200
        secret = cfg.parent / "state" / "jwt.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
