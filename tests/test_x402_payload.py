"""aroutd.x402.payload: PAYMENT-SIGNATURE (v2) and X-PAYMENT (v1) decoded, or 400."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import BadRequest
from aroutd.x402 import networks
from aroutd.x402.payload import (
    MAX_SIGNATURE_BYTES,
    EvmPayload,
    PaymentPayload,
    SolanaPayload,
    decode_payment_signature,
    decode_x_payment,
    select_requirement,
)
from aroutd.x402.requirements import MAX_HEADER_CHARS, encode_header

VECTORS = Path(__file__).parent / "vectors"
EVM = json.loads((VECTORS / "x402_evm.json").read_text())
SOL = json.loads((VECTORS / "x402_solana.json").read_text())["transaction"]
HEADER = EVM["headers"][0]["header"]  # reference/vectors/evm_vectors.out
V2 = json.loads(base64.b64decode(HEADER))
SOL_REQUIREMENT = {
    "scheme": "exact",
    "network": SOL["network"],
    "amount": SOL["amount"],
    "asset": SOL["asset"],
    "payTo": SOL["pay_to"],
    "maxTimeoutSeconds": 300,
    "extra": {"feePayer": SOL["fee_payer"]},
}
SOL_V2: dict[str, Any] = {
    "x402Version": 2,
    "accepted": SOL_REQUIREMENT,
    "payload": {"transaction": SOL["base64"]},
}


def header(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def test_decodes_the_reference_evm_payload() -> None:
    p = decode_payment_signature(HEADER)
    assert (p.x402_version, p.scheme, p.network) == (2, "exact", "eip155:84532")
    assert p.accepted == V2["accepted"] and p.raw == V2
    assert p.resource == V2["resource"] and p.extensions is None
    assert isinstance(p.payload, EvmPayload)
    a = p.payload.authorization
    assert (a.from_address, a.to) == (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
    )
    assert (a.value, a.valid_after, a.valid_before) == (10000, 1740672089, 1740672154)
    assert a.nonce.hex() == "f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
    assert p.payload.signature.hex() == V2["payload"]["signature"][2:]
    assert decode_payment_signature(HEADER.encode()) == p  # bytes, as h11 gives headers


def test_decodes_a_solana_payload_and_keeps_extensions() -> None:
    ext = {"sign-in-with-x": {"info": {"nonce": "n"}}}
    p = decode_payment_signature(header(SOL_V2 | {"extensions": ext}))
    assert isinstance(p.payload, SolanaPayload)
    assert p.payload.transaction == base64.b64decode(SOL["base64"])
    assert p.extensions == ext


def test_an_unknown_namespace_is_well_formed_but_typed_none() -> None:
    obj = copy.deepcopy(V2)
    obj["accepted"]["network"] = "algorand:SGO1GKSzyE7IEPItTxCByw9x8FmnrCDexi9/cOUJOiI="
    p = decode_payment_signature(header(obj))
    assert p.payload is None
    assert select_requirement(p, [V2["accepted"]]) is None


def v1(obj: dict[str, Any], network: str) -> dict[str, Any]:
    return {"x402Version": 1, "scheme": "exact", "network": network, "payload": obj["payload"]}


def test_v1_x_payment_maps_to_the_same_value() -> None:
    p = decode_x_payment(header(v1(V2, "base-sepolia")))
    v2 = decode_payment_signature(HEADER)
    assert (p.x402_version, p.network, p.accepted, p.payload) == (
        1,
        "eip155:84532",
        None,
        v2.payload,
    )
    tiers = [V2["accepted"] | {"amount": "5000000"}, V2["accepted"]]
    assert select_requirement(p, tiers) is tiers[1]
    assert select_requirement(p, tiers[:1]) is None
    other_network = [V2["accepted"] | {"network": "eip155:8453"}]
    assert select_requirement(p, other_network) is None


def test_v1_solana_is_matched_by_the_transferred_amount() -> None:
    p = decode_x_payment(header(v1(SOL_V2, "solana-devnet")))
    assert p.network == SOL["network"]
    tiers = [SOL_REQUIREMENT | {"amount": "5000000"}, SOL_REQUIREMENT]
    assert select_requirement(p, tiers) is tiers[1]


def test_v2_selection_is_accepted_equality() -> None:
    p = decode_payment_signature(HEADER)
    advertised = [V2["accepted"] | {"amount": "1"}, dict(V2["accepted"])]
    assert select_requirement(p, advertised) is advertised[1]
    assert select_requirement(p, advertised[:1]) is None


def mutate(path: str, value: Any) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(V2)
    *parents, last = path.split(".")
    target = obj
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return obj


DELETE = object()
AUTH = "payload.authorization"


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        pytest.param(mutate("x402Version", 1), "x402Version must be 2", id="version-1"),
        pytest.param(mutate("x402Version", "2"), "x402Version must be a JSON integer", id="v-str"),
        pytest.param(
            mutate("x402Version", True), "x402Version must be a JSON integer", id="v-bool"
        ),
        pytest.param(
            mutate("accepted", DELETE), "accepted must be a JSON object", id="no-accepted"
        ),
        pytest.param(mutate("accepted", []), "accepted must be a JSON object", id="accepted-list"),
        pytest.param(mutate("accepted.network", 8453), "accepted.network must", id="network-int"),
        pytest.param(mutate("accepted.scheme", None), "accepted.scheme must", id="scheme-null"),
        pytest.param(mutate("payload", "x"), "payload must be a JSON object", id="payload-str"),
        pytest.param(mutate("resource", "x"), "resource must be a JSON object", id="resource-str"),
        pytest.param(mutate("extensions", []), "extensions must be", id="extensions-list"),
        pytest.param(mutate("payload.signature", DELETE), "payload.signature", id="no-sig"),
        pytest.param(mutate("payload.signature", "abcd"), "must be 0x hex", id="sig-no-0x"),
        pytest.param(mutate("payload.signature", "0xabc"), "must be 0x hex", id="sig-odd"),
        pytest.param(
            mutate("payload.signature", "0x" + "ab" * (MAX_SIGNATURE_BYTES + 1)),
            "must be 0x hex",
            id="sig-huge",
        ),
        pytest.param(mutate(AUTH, DELETE), "payload.authorization", id="no-authorization"),
        pytest.param(mutate(f"{AUTH}.nonce", "0x1234"), "nonce must be 0x + 64 hex", id="nonce"),
        pytest.param(mutate(f"{AUTH}.nonce", "f3" * 32), "nonce must be 0x", id="nonce-no-0x"),
        pytest.param(mutate(f"{AUTH}.value", 10000), "value must be a JSON string", id="value-n"),
        pytest.param(mutate(f"{AUTH}.value", "-1"), "decimal uint256", id="value-negative"),
        pytest.param(mutate(f"{AUTH}.value", "010000"), "decimal uint256", id="value-leading-0"),
        pytest.param(mutate(f"{AUTH}.value", "1e4"), "decimal uint256", id="value-exponent"),
        pytest.param(
            mutate(f"{AUTH}.validBefore", str(2**256)), "uint256", id="valid-before-2^256"
        ),
        pytest.param(mutate(f"{AUTH}.validAfter", "٣"), "uint256", id="arabic-digit"),
        pytest.param(
            mutate(f"{AUTH}.from", "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            "authorization.from must be a 0x address",
            id="from-bad-eip55",
        ),
        pytest.param(mutate(f"{AUTH}.to", "0x1234"), "authorization.to", id="to-short"),
    ],
)
def test_malformed_payment_signature(obj: dict[str, Any], why: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(why)) as info:
        decode_payment_signature(header(obj))
    assert (info.value.status, info.value.code) == (400, None)  # SPEC §13: no code
    assert info.value.message.startswith(("invalid PAYMENT-SIGNATURE header: ", "PAYMENT-SIG"))


@pytest.mark.parametrize(
    ("transaction", "why"),
    [
        pytest.param("not base64!", "standard base64", id="not-base64"),
        pytest.param("AAAA-_", "standard base64", id="url-safe"),
        pytest.param("A", "standard base64", id="bad-length"),
        pytest.param("A" * 4000, "standard base64 of a transaction", id="too-long"),
        pytest.param(12, "payload.transaction must be a JSON string", id="number"),
    ],
)
def test_malformed_solana_transaction(transaction: Any, why: str) -> None:
    obj = copy.deepcopy(SOL_V2)
    obj["payload"]["transaction"] = transaction
    with pytest.raises(BadRequest, match=why):
        decode_payment_signature(header(obj))


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        pytest.param(v1(V2, "base") | {"x402Version": 2}, "x402Version must be 1", id="version"),
        pytest.param(v1(V2, "base") | {"scheme": 1}, "scheme must be", id="scheme"),
        pytest.param(v1(V2, "base") | {"network": None}, "network must be", id="network"),
        pytest.param(v1(V2, "base") | {"payload": []}, "payload must be", id="payload"),
    ],
)
def test_malformed_x_payment(obj: dict[str, Any], why: str) -> None:
    with pytest.raises(BadRequest, match=f"invalid X-PAYMENT header: {why}"):
        decode_x_payment(header(obj))


def test_size_and_nesting_limits() -> None:
    big = copy.deepcopy(V2) | {"resource": {"url": "x" * MAX_HEADER_CHARS}}
    with pytest.raises(BadRequest, match="invalid PAYMENT-SIGNATURE header: too large"):
        decode_payment_signature(header(big))
    deep: Any = {}
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(BadRequest, match="nested too deeply"):
        decode_payment_signature(header(V2 | {"extensions": deep}))


def _check(decode: Any, value: str | bytes) -> None:
    try:
        got: object = decode(value)
    except BadRequest as exc:
        got = exc.status
    assert isinstance(got, PaymentPayload) or got == 400


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_headers_parse_or_400(value: str | bytes) -> None:
    _check(decode_payment_signature, value)
    _check(decode_x_payment, value)


LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=70)
JSON = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["", "accepted", "payload", AUTH]), st.text(max_size=12), JSON)
def test_arbitrary_fields_parse_or_400(where: str, key: str, value: Any) -> None:
    """Shaped input: the reference payload with one field replaced or added."""
    obj = copy.deepcopy(V2)
    target = obj
    for part in filter(None, where.split(".")):
        target = target[part]
    target[key] = value
    _check(decode_payment_signature, encode_header(obj))
    _check(decode_x_payment, encode_header(v1(obj, "base")))
    _check(decode_payment_signature, encode_header(obj | {"accepted": SOL_REQUIREMENT}))


def test_the_solana_network_constant_is_the_vector_network() -> None:
    assert SOL["network"] == networks.SOLANA_DEVNET.caip2
