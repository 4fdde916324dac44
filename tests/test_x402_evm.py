"""aroutd.x402.evm: the EIP-3009 digest against known answers, and local verification."""

from __future__ import annotations

import base64
import copy
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.mechanisms.evm.exact import register_exact_evm_client

from aroutd.config.values import X402Config
from aroutd.x402 import networks, reasons
from aroutd.x402.evm import (
    DOMAIN_TYPEHASH,
    TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    domain_separator,
    struct_hash,
    transfer_with_authorization_digest,
    verify_evm,
)
from aroutd.x402.payload import (
    EvmAuthorization,
    EvmPayload,
    PaymentPayload,
    decode_payment_signature,
    select_requirement,
)
from aroutd.x402.reasons import Refused, Verified
from aroutd.x402.requirements import encode_header, payment_required

VECTORS = json.loads((Path(__file__).parent / "vectors" / "x402_evm.json").read_text())
KEY0 = VECTORS["local"]["private_key"]
ADDR0 = VECTORS["local"]["address"]
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # Hardhat #1
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NOW = 1740672100  # inside the vectors' window [1740672089, 1740672154 - 6]
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


def requirement(
    net: networks.EvmNetwork = networks.BASE_SEPOLIA, amount: str = "10000"
) -> dict[str, Any]:
    return {
        "scheme": "exact",
        "network": net.caip2,
        "amount": amount,
        "asset": net.usdc,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": net.eip712_name, "version": net.eip712_version},
    }


def authorization(a: dict[str, str]) -> EvmAuthorization:
    return EvmAuthorization(
        from_address=a["from"],
        to=a["to"],
        value=int(a["value"]),
        valid_after=int(a["validAfter"]),
        valid_before=int(a["validBefore"]),
        nonce=bytes.fromhex(a["nonce"][2:]),
    )


def payment(auth: EvmAuthorization, signature: bytes, req: dict[str, Any]) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2,
        scheme="exact",
        network=req["network"],
        accepted=req,
        payload=EvmPayload(signature=signature, authorization=auth),
        resource=None,
        extensions=None,
        raw={},
    )


def sign(
    auth: EvmAuthorization, key: str = KEY0, net: networks.EvmNetwork = networks.BASE_SEPOLIA
) -> bytes:
    message = {
        "from": auth.from_address,
        "to": auth.to,
        "value": auth.value,
        "validAfter": auth.valid_after,
        "validBefore": auth.valid_before,
        "nonce": auth.nonce,
    }
    domain = {
        "name": net.eip712_name,
        "version": net.eip712_version,
        "chainId": net.chain_id,
        "verifyingContract": net.usdc,
    }
    signed = Account.from_key(key).sign_typed_data(domain, TWA_TYPES, message)
    return bytes(signed.signature)


def test_typehashes() -> None:
    # reference/vectors/evm_vectors.out
    assert (
        DOMAIN_TYPEHASH.hex() == "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f"
    )
    assert TRANSFER_WITH_AUTHORIZATION_TYPEHASH.hex() == (
        "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
    )


@pytest.mark.parametrize(
    ("net", "separator"),
    [
        # x402-siwx.md §2.1
        pytest.param(
            networks.BASE,
            "02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f",
            id="base",
        ),
        pytest.param(
            networks.BASE_SEPOLIA,
            "71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818",
            id="sepolia",
        ),
    ],
)
def test_domain_separators(net: networks.EvmNetwork, separator: str) -> None:
    got = domain_separator(
        name=net.eip712_name,
        version=net.eip712_version,
        chain_id=net.chain_id,
        verifying_contract=net.usdc,
    )
    assert got.hex() == separator


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["domain_label"]) for v in VECTORS["local"]["vectors"]]
)
def test_local_vectors(vector: dict[str, Any]) -> None:
    """x402-siwx.md §6.3: key #0, both domains; digests and signatures known."""
    auth = authorization(VECTORS["local"]["authorization"])
    d = vector["domain"]
    assert "0x" + struct_hash(auth).hex() == vector["struct_hash"]
    digest = transfer_with_authorization_digest(
        auth,
        chain_id=d["chainId"],
        verifying_contract=d["verifyingContract"],
        name=d["name"],
        version=d["version"],
    )
    assert "0x" + digest.hex() == vector["digest"]
    net = networks.network(f"eip155:{d['chainId']}")
    assert isinstance(net, networks.EvmNetwork)
    signature = bytes.fromhex(vector["signature"][2:])
    got = verify_evm(payment(auth, signature, requirement(net)), requirement(net), NOW)
    assert isinstance(got, Verified) and got.payer == ADDR0


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["domain_label"]) for v in VECTORS["spec_example"]["domains"]]
)
def test_the_spec_example_signature(vector: dict[str, Any]) -> None:
    """x402-siwx.md §6.2: valid under Base Sepolia's domain only."""
    example = VECTORS["spec_example"]
    auth = authorization(example["authorization"])
    d = vector["domain"]
    digest = transfer_with_authorization_digest(
        auth,
        chain_id=d["chainId"],
        verifying_contract=d["verifyingContract"],
        name=d["name"],
        version=d["version"],
    )
    assert "0x" + digest.hex() == vector["digest"]
    req = requirement(networks.BASE_SEPOLIA) | {"extra": {"name": d["name"], "version": "2"}}
    if d["chainId"] == networks.BASE.chain_id:
        req = requirement(networks.BASE)
    signature = bytes.fromhex(example["signature"][2:])
    got = verify_evm(payment(auth, signature, req), req, NOW)
    if vector["recovered"] == "0x857b06519E91e3A54538791bDbb0E22373e36b66":
        assert got == Verified(
            network="eip155:84532",
            payer="0x857b06519E91e3A54538791bDbb0E22373e36b66",
            amount="10000",
            replay_key="eip155:84532/0x857b06519e91e3a54538791bdbb0e22373e36b66/"
            "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480",
        )
    else:
        assert got == Refused(
            reason=reasons.EVM_SIGNATURE, message="signature does not recover to from"
        )


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=str(i)) for i, v in enumerate(VECTORS["headers"])]
)
def test_headers_verify(vector: dict[str, Any]) -> None:
    """The evm_vectors.out header, and the one x402 2.25's client made (client_payment.out)."""
    p = decode_payment_signature(vector["header"])
    req = requirement(networks.BASE_SEPOLIA) | {"maxTimeoutSeconds": 60}
    assert select_requirement(p, [requirement(), req]) is not None
    got = verify_evm(p, req, vector["now"])
    assert isinstance(got, Verified) and got.payer == vector["payer"]


def fresh(now: int = NOW, **change: Any) -> EvmAuthorization:
    auth = EvmAuthorization(
        from_address=ADDR0,
        to=PAY_TO,
        value=10000,
        valid_after=now - 600,
        valid_before=now + 300,
        nonce=os.urandom(32),
    )
    return replace(auth, **change)


def test_eth_account_round_trip() -> None:
    auth = fresh()
    got = verify_evm(payment(auth, sign(auth), requirement()), requirement(), NOW)
    assert got == Verified(
        network="eip155:84532",
        payer=ADDR0,
        amount="10000",
        replay_key=f"eip155:84532/{ADDR0.lower()}/0x{auth.nonce.hex()}",
    )


def _v01(sig: bytes) -> bytes:
    return sig[:64] + bytes((sig[64] - 27,))


def _high_s(sig: bytes) -> bytes:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = n - int.from_bytes(sig[32:64], "big")
    return sig[:32] + s.to_bytes(32, "big") + bytes((55 - sig[64],))


GOOD = fresh()


@pytest.mark.parametrize(
    ("auth", "signature", "reason"),
    [
        pytest.param(GOOD, sign(GOOD), None, id="good"),
        pytest.param(GOOD, _v01(sign(GOOD)), None, id="v-as-0-1"),
        pytest.param(replace(GOOD, to=ADDR0), sign(GOOD), reasons.EVM_RECIPIENT_MISMATCH, id="to"),
        pytest.param(
            replace(GOOD, value=10001), sign(GOOD), reasons.EVM_VALUE_MISMATCH, id="value"
        ),
        pytest.param(replace(GOOD, nonce=bytes(32)), sign(GOOD), reasons.EVM_SIGNATURE, id="nonce"),
        pytest.param(
            fresh(valid_before=NOW + 5),
            sign(fresh(valid_before=NOW + 5)),
            reasons.EVM_VALID_BEFORE,
            id="valid-before-too-near",
        ),
        pytest.param(
            fresh(valid_before=NOW - 1),
            sign(fresh(valid_before=NOW - 1)),
            reasons.EVM_VALID_BEFORE,
            id="valid-before-past",
        ),
        pytest.param(
            fresh(valid_after=NOW + 1),
            sign(fresh(valid_after=NOW + 1)),
            reasons.EVM_VALID_AFTER,
            id="valid-after-future",
        ),
        pytest.param(GOOD, sign(GOOD, KEY1), reasons.EVM_SIGNATURE, id="wrong-signer"),
        pytest.param(GOOD, sign(GOOD, net=networks.BASE), reasons.EVM_SIGNATURE, id="other-domain"),
        pytest.param(GOOD, _high_s(sign(GOOD)), reasons.EVM_SIGNATURE, id="high-s"),
        pytest.param(GOOD, sign(GOOD)[:64], reasons.EVM_SIGNATURE, id="64-bytes-eip2098"),
        pytest.param(GOOD, sign(GOOD) + bytes(32), reasons.EVM_SIGNATURE, id="smart-wallet-length"),
        pytest.param(GOOD, sign(GOOD)[:64] + b"\x1d", reasons.EVM_SIGNATURE, id="v-29"),
        pytest.param(GOOD, bytes(65), reasons.EVM_SIGNATURE, id="zero-signature"),
        pytest.param(
            replace(GOOD, from_address="0x" + "00" * 20),
            sign(GOOD),
            reasons.EVM_SIGNATURE,
            id="zero-from",
        ),
    ],
)
def test_each_mutation_has_its_reason(
    auth: EvmAuthorization, signature: bytes, reason: str | None
) -> None:
    got = verify_evm(payment(auth, signature, requirement()), requirement(), NOW)
    if reason is None:
        assert isinstance(got, Verified)
    else:
        assert isinstance(got, Refused) and got.reason == reason


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        pytest.param(GOOD.valid_before - 6, True, id="valid-before-minus-6"),
        pytest.param(GOOD.valid_before - 5, False, id="valid-before-minus-5"),
        pytest.param(GOOD.valid_after, True, id="valid-after-itself"),
        pytest.param(GOOD.valid_after - 1, False, id="before-valid-after"),
    ],
)
def test_time_window_edges(now: int, ok: bool) -> None:
    """SPEC §10: validAfter <= now <= validBefore - 6 s."""
    got = verify_evm(payment(GOOD, sign(GOOD), requirement()), requirement(), now)
    assert isinstance(got, Verified) is ok


@pytest.mark.parametrize(
    ("change", "payment_change", "reason"),
    [
        pytest.param({"scheme": "upto"}, {}, reasons.UNSUPPORTED_SCHEME, id="requirement-scheme"),
        pytest.param({}, {"scheme": "upto"}, reasons.UNSUPPORTED_SCHEME, id="payment-scheme"),
        pytest.param({}, {"network": "eip155:8453"}, reasons.NETWORK_MISMATCH, id="network"),
        pytest.param(
            {"network": "solana:x", "asset": "x"},
            {"network": "solana:x"},
            reasons.INVALID_NETWORK,
            id="not-evm",
        ),
        pytest.param(
            {"network": "eip155:0"}, {"network": "eip155:0"}, reasons.INVALID_NETWORK, id="chain-0"
        ),
        pytest.param({"extra": {}}, {}, reasons.EVM_MISSING_EIP712_DOMAIN, id="no-domain"),
        pytest.param(
            {"extra": {"name": "USDC"}}, {}, reasons.EVM_MISSING_EIP712_DOMAIN, id="no-version"
        ),
        pytest.param({}, {"payload": None}, reasons.INVALID_PAYLOAD, id="no-evm-payload"),
    ],
)
def test_requirement_and_payment_shape(
    change: dict[str, Any], payment_change: dict[str, Any], reason: str
) -> None:
    req = requirement() | change
    p = replace(payment(GOOD, sign(GOOD), requirement()), **payment_change)
    got = verify_evm(p, req, NOW)
    assert isinstance(got, Refused) and got.reason == reason


@pytest.mark.parametrize(
    ("spend_controls", "tier", "amount"),
    [
        # x402 2.25 caps a payment at $1 by default (client_base DEFAULT_MAX_AMOUNT_PER_PAYMENT),
        # so it skips the $5 default and pays the first tier it may.
        pytest.param(None, 1, "1000000", id="default-spend-cap-1-usd"),
        pytest.param(False, 0, "5000000", id="no-cap-takes-the-first"),
    ],
)
def test_the_x402_client_pays_what_payment_required_asks(
    spend_controls: Any, tier: int, amount: str
) -> None:
    """SPEC §10 in pure values: x402 2.25 reads our 402, pays it, and we verify that."""
    cfg = X402Config(enabled=True, pay_to_evm=PAY_TO.lower(), networks=("eip155:84532",))
    required = payment_required(
        cfg,
        resource_url="https://gw.example/v1/chat/completions",
        description="credit",
        mime_type="application/json",
        error="Payment required",
        solana_fee_payers={},
        siwx=None,
    )
    header = encode_header(required)
    client = register_exact_evm_client(x402ClientSync(), Account.from_key(KEY0))
    if spend_controls is False:
        client.set_spend_controls(False)
    http = x402HTTPClientSync(client)
    parsed = http.get_payment_required_response(
        lambda name: header if name.upper() == "PAYMENT-REQUIRED" else None, b"{}"
    )
    headers = http.encode_payment_signature_header(client.create_payment_payload(parsed))
    p = decode_payment_signature(headers["PAYMENT-SIGNATURE"])
    chosen = select_requirement(p, required["accepts"])
    assert chosen is required["accepts"][tier]
    got = verify_evm(p, chosen, int(time.time()))
    assert isinstance(got, Verified)
    assert (got.payer, got.amount) == (ADDR0, amount)
    # A client that edits what it accepted matches nothing (SPEC §10).
    raw = copy.deepcopy(dict(p.raw))
    raw["accepted"]["amount"] = "1"
    edited = decode_payment_signature(base64.b64encode(json.dumps(raw).encode()))
    assert select_requirement(edited, required["accepts"]) is None
