"""Generate the committed SIWx / EVM / Solana vectors in this folder (test-only, run once).

    python tests/vectors/make_vectors.py

Independent signers, none of them aroutd code: eth-account (EIP-191 personal_sign,
EIP-55), solders (ed25519 keypairs), and x402 2.25's own ``create_siwx_payload`` /
``encode_siwx_header``. x402 formats EVM messages through ``siwe``
(signinwithethereum, the ``x402[extensions]`` extra); without it the x402 EVM vectors
are skipped with a note. eth-account and ed25519 are deterministic (RFC 6979 / RFC
8032), so re-running gives the same files.

Keys are public test keys (never fund them): Hardhat/Anvil accounts #0 and #1, and the
ed25519 seeds 01..20 (x402-siwx.md §6.4) and 07 * 32.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from eth_utils.address import to_checksum_address
from solders.keypair import Keypair
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header
from x402.extensions.sign_in_with_x.solana import encode_base58

HERE = Path(__file__).parent
REFERENCE_OUT = Path("/work/shared/reference/vectors/siwx_vectors.out").read_text()
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NETWORKS = [
    "eip155:8453",
    "eip155:84532",
    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
]
SOL_MAIN = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOL_DEV = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
PUBLIC_URL = "https://api.example.com"
ISSUED = "2026-03-20T12:00:00Z"
NOW = "2026-03-20T12:00:30Z"
NONCE = "a1b2c3d4e5f67890a1b2c3d4e5f67890"
STATEMENT = "Sign in to ARouter with your wallet"

evm0 = Account.from_key(KEY0)
evm1 = Account.from_key(KEY1)
sol0 = Keypair.from_seed(bytes(range(1, 33)))
sol1 = Keypair.from_seed(bytes([7] * 32))


class SoldersSigner:
    """What x402's Solana SIWx signing takes (x402-siwx.md §7): ``address`` and
    ``sign_message(bytes) -> 64 bytes``. A bare solders Keypair has no ``address``, and
    x402's own KeypairSigner needs the ``x402[svm]`` extra (the solana RPC package)."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self.address = str(keypair.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        return bytes(self.keypair.sign_message(message))


def write(name: str, source: str, vectors: list[dict[str, Any]]) -> None:
    body = {"source": source, "vectors": vectors}
    (HERE / name).write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: {len(vectors)} vectors")


def b64json(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def evm_sign(account: Any, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def high_s(signature: str) -> str:
    """The malleable twin (r, n - s, v ^ 1) of a signature: ecrecover gives the same key."""
    raw = bytes.fromhex(signature[2:])
    s = int.from_bytes(raw[32:64], "big")
    v = 27 + (1 - (raw[64] - 27))
    return "0x" + (raw[:32] + (N - s).to_bytes(32, "big") + bytes((v,))).hex()


def sol_sign(keypair: Keypair, text: str, encoding: str = "base58") -> str:
    sig = bytes(keypair.sign_message(text.encode()))
    return encode_base58(sig) if encoding == "base58" else base64.b64encode(sig).decode()


def message(
    *,
    label: str = "Ethereum",
    address: str,
    chain_id: str = "8453",
    domain: str = "api.example.com",
    uri: str = "https://api.example.com/v1/x402/auth",
    statement: str | None = STATEMENT,
    blank_lines: int = 2,
    nonce: str = NONCE,
    issued_at: str = ISSUED,
    extra: tuple[str, ...] = (),
) -> str:
    """The ARouter SDK text (arouter-api.md §3.3), optional lines appended as given."""
    lines = [f"{domain} wants you to sign in with your {label} account:", address, ""]
    if statement is not None:
        lines += [statement, ""]
    elif blank_lines == 2:
        lines.append("")
    lines += [f"URI: {uri}", "Version: 1", f"Chain ID: {chain_id}", f"Nonce: {nonce}"]
    lines += [f"Issued At: {issued_at}", *extra]
    return "\n".join(lines)


def signin(
    vid: str,
    header: str,
    expect: dict[str, Any],
    *,
    now: str = NOW,
    public_url: str = PUBLIC_URL,
    networks: list[str] = NETWORKS,
) -> dict[str, Any]:
    return {
        "id": vid,
        "header": header,
        "public_url": public_url,
        "networks": networks,
        "max_age_s": 300,
        "now": now,
        "expect": expect,
    }


def ok(account: str, until: str = "2026-03-20T12:05:00Z") -> dict[str, Any]:
    return {"account": account, "nonce": NONCE, "nonce_expires_at": until}


def err(status: int, msg: str) -> dict[str, Any]:
    return {"status": status, "message": msg}


def arouter(text: str, signature: str) -> str:
    return b64json({"message": text, "signature": signature})


def eip55() -> None:
    # EIP-55 "Test Cases" (ethereum/ERCs ERCS/erc-55.md), checked with eth-utils.
    listed = [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ]
    vectors = [{"input": a, "checksum": to_checksum_address(a), "valid": True} for a in listed]
    for a in listed[4:]:
        # One letter's case flipped: a mixed-case spelling with a wrong checksum.
        i = next(i for i, c in enumerate(a) if i > 1 and c.isalpha())
        bad = a[:i] + a[i].swapcase() + a[i + 1 :]
        vectors.append({"input": bad, "checksum": to_checksum_address(a), "valid": False})
    write("eip55.json", "EIP-55 test cases (ethereum/ERCs erc-55.md); eth-utils", vectors)


def eip191() -> None:
    vectors = []
    for text in ["hello", "", "héllo ✓ wallet", "line1\nline2"]:
        signed = evm0.sign_message(encode_defunct(text=text))
        vectors.append(
            {
                "message": text,
                "hash": "0x" + _hash_eip191_message(encode_defunct(text=text)).hex(),
                "signature": "0x" + bytes(signed.signature).hex(),
                "address": evm0.address,
            }
        )
    write(
        "eip191.json",
        "eth-account personal_sign with Hardhat key #0; 'hello' also in x402-siwx.md §6.3",
        vectors,
    )


def base58() -> None:
    # bitcoin/bitcoin src/test/data/base58_encode_decode.json, checked with x402's encoder.
    pairs = [
        ("", ""),
        ("61", "2g"),
        ("626262", "a3gV"),
        ("636363", "aPEr"),
        ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
        (
            "00eb15231dfceb60925886b67d065299925915aeb172c06647",
            "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L",
        ),
        ("516b6fcd0f", "ABnLTmg"),
        ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
        ("572e4794", "3EFU7m"),
        ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
        ("10c8511e", "Rt5zm"),
        ("00000000000000000000", "1111111111"),
    ]
    for hex_, b58 in pairs:
        # x402's encoder appends one "1" too many for all-zero input (and "" for empty).
        if hex_.strip("0"):
            assert encode_base58(bytes.fromhex(hex_)) == b58, (hex_, b58)
    vectors = [{"hex": h, "base58": b} for h, b in pairs]
    vectors.append({"hex": bytes(sol0.pubkey()).hex(), "base58": str(sol0.pubkey())})
    write("base58.json", "bitcoin core base58_encode_decode.json; solders Pubkey", vectors)


def evm_signin() -> list[dict[str, Any]]:
    a0, a1 = evm0.address, evm1.address
    acct0 = f"eip155:8453:{a0}"
    v: list[dict[str, Any]] = []
    text = message(address=a0)
    v.append(signin("evm-arouter-go", arouter(text, evm_sign(evm0, text)), ok(acct0)))
    t = message(address=a0, issued_at="2026-03-20T12:00:00.123Z")
    v.append(
        signin(
            "evm-arouter-node-ms",
            arouter(t, evm_sign(evm0, t)),
            ok(acct0, "2026-03-20T12:05:00.123Z"),
        )
    )
    for blanks in (1, 2):
        t = message(address=a0, statement=None, blank_lines=blanks)
        v.append(
            signin(f"evm-no-statement-{blanks}-blank", arouter(t, evm_sign(evm0, t)), ok(acct0))
        )
    t = message(address=a0.lower())
    v.append(signin("evm-lowercase-address", arouter(t, evm_sign(evm0, t)), ok(acct0)))
    t = message(address=a0, chain_id="84532")
    v.append(signin("evm-base-sepolia", arouter(t, evm_sign(evm0, t)), ok(f"eip155:84532:{a0}")))
    t = message(address=a0, chain_id="eip155:8453")
    v.append(signin("evm-caip2-chain-id", arouter(t, evm_sign(evm0, t)), ok(acct0)))
    t = message(address=a0, extra=("Expiration Time: 2026-03-20T12:02:00Z",))
    v.append(
        signin(
            "evm-expiration-bounds-nonce",
            arouter(t, evm_sign(evm0, t)),
            ok(acct0, "2026-03-20T12:02:00Z"),
        )
    )
    sig = evm_sign(evm0, text)
    v.append(
        signin("evm-v-0-1", arouter(text, sig[:-2] + f"{int(sig[-2:], 16) - 27:02x}"), ok(acct0))
    )
    # Negative vectors.
    t = message(address=a0, chain_id="1")
    v.append(
        signin("evm-wrong-chain", arouter(t, evm_sign(evm0, t)), err(401, "unsupported chain"))
    )
    v.append(
        signin(
            "evm-tampered-nonce",
            arouter(text.replace(NONCE, "b1b2c3d4e5f67890a1b2c3d4e5f67890"), sig),
            err(401, "invalid signature"),
        )
    )
    t = message(address=a1)
    v.append(
        signin("evm-other-signer", arouter(t, evm_sign(evm0, t)), err(401, "invalid signature"))
    )
    v.append(signin("evm-high-s", arouter(text, high_s(sig)), err(401, "invalid signature")))
    v.append(
        signin("evm-truncated-signature", arouter(text, sig[:-2]), err(401, "invalid signature"))
    )
    i = next(i for i, c in enumerate(a0) if i > 1 and c.isalpha())
    bad = a0[:i] + a0[i].swapcase() + a0[i + 1 :]
    t = message(address=bad)
    v.append(
        signin(
            "evm-bad-checksum",
            arouter(t, evm_sign(evm0, t)),
            err(400, "malformed address: bad EIP-55 checksum"),
        )
    )
    t = message(address=a0, domain="evil.example.com")
    v.append(
        signin("evm-domain-mismatch", arouter(t, evm_sign(evm0, t)), err(401, "domain mismatch"))
    )
    t = message(address=a0, uri="https://evil.example.com/v1/x402/auth")
    v.append(signin("evm-uri-mismatch", arouter(t, evm_sign(evm0, t)), err(401, "domain mismatch")))
    v.append(
        signin(
            "evm-too-old",
            arouter(text, sig),
            err(401, "message expired"),
            now="2026-03-20T12:05:01Z",
        )
    )
    v.append(
        signin(
            "evm-from-the-future",
            arouter(text, sig),
            err(401, "message not yet valid"),
            now="2026-03-20T11:58:59Z",
        )
    )
    t = message(address=a0, extra=("Not Before: 2026-03-20T12:01:00Z",))
    v.append(
        signin("evm-not-before", arouter(t, evm_sign(evm0, t)), err(401, "message not yet valid"))
    )
    t = message(address=a0, extra=("Expiration Time: 2026-03-20T12:00:10Z",))
    v.append(
        signin("evm-past-expiration", arouter(t, evm_sign(evm0, t)), err(401, "message expired"))
    )
    t = message(address=a0, nonce="abc123")
    v.append(signin("evm-short-nonce", arouter(t, evm_sign(evm0, t)), err(400, "malformed nonce")))
    t = message(address=a0) + "\n"
    v.append(
        signin(
            "evm-trailing-newline",
            arouter(t, evm_sign(evm0, t)),
            err(400, "invalid SIWx message: unexpected line 11"),
        )
    )
    t = message(address=a0, domain="127.0.0.1:8080", uri="http://127.0.0.1:8080/v1/x402/auth")
    v.append(
        signin(
            "evm-host-port",
            arouter(t, evm_sign(evm0, t)),
            ok(acct0),
            public_url="http://127.0.0.1:8080",
        )
    )
    return v


def solana_signin() -> list[dict[str, Any]]:
    addr0, addr1 = str(sol0.pubkey()), str(sol1.pubkey())
    acct0 = f"solana:{SOL_MAIN}:{addr0}"
    v: list[dict[str, Any]] = []
    text = message(label="Solana", address=addr0, chain_id=SOL_MAIN)
    v.append(signin("sol-arouter-base64", arouter(text, sol_sign(sol0, text, "base64")), ok(acct0)))
    v.append(signin("sol-arouter-base58", arouter(text, sol_sign(sol0, text)), ok(acct0)))
    for blanks in (1, 2):
        t = message(
            label="Solana", address=addr0, chain_id=SOL_MAIN, statement=None, blank_lines=blanks
        )
        v.append(
            signin(f"sol-no-statement-{blanks}-blank", arouter(t, sol_sign(sol0, t)), ok(acct0))
        )
    t = message(label="Solana", address=addr0, chain_id=SOL_DEV)
    v.append(signin("sol-devnet", arouter(t, sol_sign(sol0, t)), ok(f"solana:{SOL_DEV}:{addr0}")))
    v.append(
        signin(
            "sol-devnet-not-configured",
            arouter(t, sol_sign(sol0, t)),
            err(401, "unsupported chain"),
            networks=NETWORKS[:3],
        )
    )
    sig = sol_sign(sol0, text)
    v.append(
        signin(
            "sol-tampered-nonce",
            arouter(text.replace(NONCE, "b1b2c3d4e5f67890a1b2c3d4e5f67890"), sig),
            err(401, "invalid signature"),
        )
    )
    t = message(label="Solana", address=addr1, chain_id=SOL_MAIN)
    v.append(
        signin("sol-other-signer", arouter(t, sol_sign(sol0, t)), err(401, "invalid signature"))
    )
    v.append(signin("sol-short-signature", arouter(text, sig[:-4]), err(401, "invalid signature")))
    t = message(label="Solana", address=addr0[:-4], chain_id=SOL_MAIN)
    v.append(
        signin("sol-short-address", arouter(t, sol_sign(sol0, t)), err(400, "malformed address"))
    )
    t = message(label="Ethereum", address=addr0, chain_id=SOL_MAIN)
    v.append(
        signin(
            "sol-ethereum-label",
            arouter(t, sol_sign(sol0, t)),
            err(400, "invalid SIWx message: the account type does not match the Chain ID"),
        )
    )
    return v


async def x402_signin() -> list[dict[str, Any]]:
    """Headers made by x402 2.25 itself, in its extension form (x402-siwx.md §5.4)."""
    v: list[dict[str, Any]] = []
    base = {
        "domain": "api.example.com",
        "uri": "https://api.example.com/v1/x402/auth",
        "version": "1",
        "nonce": NONCE,
        "issuedAt": "2026-03-20T12:00:00.000Z",
    }
    full = {
        **base,
        "statement": "Sign in to access premium data",
        "expirationTime": "2026-03-20T12:03:00.000Z",
        "resources": ["https://api.example.com/v1/chat/completions"],
        "requestId": "req-42",
    }
    url = "https://api.example.com/v1/x402/auth"
    cases: list[tuple[str, Any, str, str, str]] = [
        (
            "sol",
            SoldersSigner(sol0),
            f"solana:{SOL_MAIN}",
            "ed25519",
            f"solana:{SOL_MAIN}:{sol0.pubkey()}",
        ),
    ]
    try:
        import siwe  # noqa: F401

        cases.insert(0, ("evm", evm0, "eip155:8453", "eip191", f"eip155:8453:{evm0.address}"))
    except ImportError:
        print("signinwithethereum not importable: x402 EVM vectors skipped")
    for prefix, signer, chain, type_, account in cases:
        for name, info, until in (
            ("minimal", base, "2026-03-20T12:05:00Z"),
            ("full", full, "2026-03-20T12:03:00Z"),
        ):
            payload = await create_siwx_payload(
                {**info, "chainId": chain, "type": type_}, signer, url
            )
            v.append(
                signin(f"x402-{prefix}-{name}", encode_siwx_header(payload), ok(account, until))
            )
        payload = await create_siwx_payload({**base, "chainId": chain, "type": type_}, signer, url)
        payload.nonce = "b1b2c3d4e5f67890a1b2c3d4e5f67890"
        v.append(
            signin(
                f"x402-{prefix}-tampered-nonce",
                encode_siwx_header(payload),
                err(401, "invalid signature"),
            )
        )
    # The two headers printed in x402-siwx.md §6.4 (reference/vectors/siwx_vectors.out).
    out = REFERENCE_OUT.split("\n")
    headers = [
        out[i + 1] for i, line in enumerate(out) if line.startswith("=== SIGN-IN-WITH-X header")
    ]
    for prefix, header, account in zip(
        ("evm", "sol"),
        headers,
        (f"eip155:8453:{evm0.address}", f"solana:{SOL_MAIN}:{sol0.pubkey()}"),
        strict=True,
    ):
        v.append(
            signin(
                f"x402-reference-{prefix}",
                header,
                {"account": account, "nonce": NONCE, "nonce_expires_at": "2024-01-15T10:35:00Z"},
                now="2024-01-15T10:31:00Z",
            )
        )
    return v


def main() -> None:
    eip55()
    eip191()
    base58()
    source = (
        "SIGN-IN-WITH-X headers: ARouter SDK form built as arouter-api.md §3.3 and signed with "
        "eth-account (Hardhat keys #0/#1) and solders (seeds 01..20 and 07*32); x402 form made "
        "by x402 2.25 create_siwx_payload/encode_siwx_header (EVM through signinwithethereum "
        "5.0.2); x402-reference-* copied from x402-siwx.md §6.4. Made by make_vectors.py."
    )
    write("siwx_signin.json", source, evm_signin() + solana_signin() + asyncio.run(x402_signin()))


if __name__ == "__main__":
    main()
