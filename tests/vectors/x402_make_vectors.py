"""Generate the committed x402 vectors in this folder (test-only, run once).

    python tests/vectors/x402_make_vectors.py

Independent of aroutd: eth-account (EIP-712 typed-data signing and recovery), x402
2.25's own ``hash_eip3009_authorization`` as a cross-check, and solders (ed25519,
``get_associated_token_address``, v0 messages). Both signers are deterministic
(RFC 6979, RFC 8032), so a re-run gives the same files.

Keys are public test keys (never fund them): Hardhat/Anvil account #0, and ed25519
seeds of repeated bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.types import ExactEIP3009Authorization

HERE = Path(__file__).parent
REFERENCE = Path("/work/shared/reference/vectors")
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
TWA_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
DOMAINS = {
    "base-sepolia": ("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
    "base": ("USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
    "sepolia-chain-mainnet-name": (
        "USD Coin",
        "2",
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    ),
}
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NONCE = "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
# x402-siwx.md §6.2: the example in the v2 HTTP transport spec.
SPEC_EXAMPLE = {
    "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
    "to": PAY_TO,
    "value": "10000",
    "validAfter": "1740672089",
    "validBefore": "1740672154",
    "nonce": NONCE,
}
SPEC_SIGNATURE = (
    "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d"
    "6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c"
)


def _typed(auth: dict[str, str], domain: tuple[str, str, int, str]) -> Any:
    name, version, chain_id, contract = domain
    message = {
        **{k: int(v) for k, v in auth.items() if k in ("value", "validAfter", "validBefore")},
        "from": auth["from"],
        "to": auth["to"],
        "nonce": bytes.fromhex(auth["nonce"][2:]),
    }
    data = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": contract}
    return encode_typed_data(domain_data=data, message_types=TWA_TYPES, message_data=message)


def _x402_digest(auth: dict[str, str], domain: tuple[str, str, int, str]) -> bytes:
    name, version, chain_id, contract = domain
    a = ExactEIP3009Authorization(
        from_address=auth["from"],
        to=auth["to"],
        value=auth["value"],
        valid_after=auth["validAfter"],
        valid_before=auth["validBefore"],
        nonce=auth["nonce"],
    )
    return bytes(hash_eip3009_authorization(a, chain_id, contract, name, version))


def _domain_json(domain: tuple[str, str, int, str]) -> dict[str, Any]:
    name, version, chain_id, contract = domain
    return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": contract}


def evm_vectors() -> dict[str, Any]:
    spec = []
    for label, domain in DOMAINS.items():
        typed = _typed(SPEC_EXAMPLE, domain)
        digest = keccak(b"\x19\x01" + typed.header + typed.body)
        assert digest == _x402_digest(SPEC_EXAMPLE, domain)
        recovered = Account._recover_hash(digest, signature=bytes.fromhex(SPEC_SIGNATURE[2:]))
        spec.append(
            {
                "domain_label": label,
                "domain": _domain_json(domain),
                "digest": "0x" + digest.hex(),
                "recovered": recovered,
            }
        )
    assert spec[0]["recovered"] == SPEC_EXAMPLE["from"]
    payer = Account.from_key(KEY0)
    auth = {**SPEC_EXAMPLE, "from": payer.address}
    local = []
    for label in ("base-sepolia", "base"):
        typed = _typed(auth, DOMAINS[label])
        digest = keccak(b"\x19\x01" + typed.header + typed.body)
        assert digest == _x402_digest(auth, DOMAINS[label])
        signed = payer.sign_message(typed)
        local.append(
            {
                "domain_label": label,
                "domain": _domain_json(DOMAINS[label]),
                "domain_separator": "0x" + typed.header.hex(),
                "struct_hash": "0x" + typed.body.hex(),
                "digest": "0x" + digest.hex(),
                "signature": "0x" + bytes(signed.signature).hex(),
            }
        )
    return {
        "source": "eth-account 0.13 sign_typed_data / _recover_hash, cross-checked with x402 "
        "2.25 hash_eip3009_authorization; x402-siwx.md §6.2 (spec example) and §6.3 (key #0)",
        "spec_example": {
            "authorization": SPEC_EXAMPLE,
            "signature": SPEC_SIGNATURE,
            "domains": spec,
        },
        "local": {
            "private_key": KEY0,
            "address": payer.address,
            "authorization": auth,
            "vectors": local,
        },
        "headers": _headers(),
    }


def _headers() -> list[dict[str, Any]]:
    out = (REFERENCE / "evm_vectors.out").read_text()
    header = re.search(r"PAYMENT-SIGNATURE \(compact JSON, std base64\): (\S+)", out)
    assert header is not None
    client = (REFERENCE / "client_payment.out").read_text()
    decoded = json.loads(client[client.index("{") : client.index("\nrecovered:")])
    now = int(re.search(r"\nnow (\d+)", client).group(1))  # type: ignore[union-attr]
    compact = json.dumps(decoded, separators=(",", ":")).encode()
    return [
        {
            "source": "reference/vectors/evm_vectors.out (eth-account, key #0, Base Sepolia)",
            "header": header.group(1),
            "now": 1740672100,
            "payer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        },
        {
            "source": "reference/vectors/client_payment.out: x402 2.25 x402ClientSync."
            "create_payment_payload, re-encoded as compact JSON",
            "header": base64.b64encode(compact).decode(),
            "now": now,
            "payer": decoded["payload"]["authorization"]["from"],
        },
    ]


TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
COMPUTE_BUDGET = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
DEVNET_USDC = Pubkey.from_string("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU")
MAINNET_USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def _ata_vectors() -> list[dict[str, str]]:
    owners = ["2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4"]  # x402-siwx.md §3.3
    owners += [str(Keypair.from_seed(bytes([i]) * 32).pubkey()) for i in range(1, 9)]
    out = []
    for owner in owners:
        for mint in (MAINNET_USDC, str(DEVNET_USDC)):
            for program in (TOKEN, TOKEN_2022):
                ata = get_associated_token_address(
                    Pubkey.from_string(owner), Pubkey.from_string(mint), program
                )
                out.append(
                    {"owner": owner, "mint": mint, "token_program": str(program), "ata": str(ata)}
                )
    assert out[0]["ata"] == "3XZXfFJHF5ox3yPop16oqYfSWxLpkjsEuvTe2S67G2rj"
    return out


def solana_vectors() -> dict[str, Any]:
    fee_payer, payer, pay_to = (Keypair.from_seed(bytes([b]) * 32) for b in (0x11, 0x22, 0x33))
    ixs = [
        Instruction(COMPUTE_BUDGET, bytes([2]) + (20000).to_bytes(4, "little"), []),
        Instruction(COMPUTE_BUDGET, bytes([3]) + (1).to_bytes(8, "little"), []),
        Instruction(
            TOKEN,
            bytes([12]) + (1000000).to_bytes(8, "little") + bytes([6]),
            [
                AccountMeta(get_associated_token_address(payer.pubkey(), DEVNET_USDC), False, True),
                AccountMeta(DEVNET_USDC, False, False),
                AccountMeta(
                    get_associated_token_address(pay_to.pubkey(), DEVNET_USDC), False, True
                ),
                AccountMeta(payer.pubkey(), True, False),
            ],
        ),
        Instruction(MEMO, b"00112233445566778899aabbccddeeff", []),
    ]
    message = MessageV0.try_compile(fee_payer.pubkey(), ixs, [], Hash(bytes([0x44]) * 32))
    signature = payer.sign_message(to_bytes_versioned(message))
    tx = VersionedTransaction.populate(message, [Signature.default(), signature])
    return {
        "source": "solders 0.29 (get_associated_token_address, MessageV0.try_compile, ed25519); "
        "the first ATA is x402-siwx.md §3.3; the transaction is laid out as x402 2.25's "
        "ExactSvmScheme client builds it (devnet USDC, 1 USDC)",
        "ata": _ata_vectors(),
        "transaction": {
            "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
            "fee_payer": str(fee_payer.pubkey()),
            "payer": str(payer.pubkey()),
            "pay_to": str(pay_to.pubkey()),
            "asset": str(DEVNET_USDC),
            "amount": "1000000",
            "base64": base64.b64encode(bytes(tx)).decode(),
            "message_sha256": hashlib.sha256(to_bytes_versioned(message)).hexdigest(),
        },
    }


def main() -> None:
    for name, data in (("x402_evm.json", evm_vectors()), ("x402_solana.json", solana_vectors())):
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
