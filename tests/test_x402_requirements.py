"""aroutd.x402.networks and .requirements: amounts, PaymentRequired, the header codec, matching."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from x402 import x402ClientSync
from x402.http import decode_payment_required_header, x402HTTPClientSync
from x402.http.utils import decode_payment_response_header
from x402.mechanisms.evm.exact import register_exact_evm_client

from aroutd.config.values import X402Config
from aroutd.errors import BadRequest
from aroutd.x402 import networks
from aroutd.x402.requirements import (
    MAX_HEADER_CHARS,
    MAX_JSON_DEPTH,
    decode_header,
    encode_header,
    find_accepted,
    payment_failure,
    payment_required,
    payment_response,
    topup_amounts,
)

PAY_TO_EVM = "0x209693bc6afc0c5328ba36faf03c514ef312287c"  # lowercase, as a config may say
PAY_TO_EVM_55 = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
PAY_TO_SOL = "2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4"
FEE_PAYER = "9C6hybhQ6Aycep9jaUnP6uL9ZYvDjUp1aSkFWPUFJtpj"
SIWX = {
    "info": {
        "domain": "api.example.com",
        "uri": "https://api.example.com/v1/chat/completions",
        "version": "1",
        "nonce": "a1b2c3d4e5f67890a1b2c3d4e5f67890",
        "issuedAt": "2024-01-15T10:30:00.000Z",
    },
    "supportedChains": [{"chainId": "eip155:8453", "type": "eip191"}],
}


def cfg(**kw: Any) -> X402Config:
    base: dict[str, Any] = {"enabled": True, "pay_to_evm": PAY_TO_EVM, "pay_to_solana": PAY_TO_SOL}
    return X402Config(**(base | kw))


@pytest.mark.parametrize(
    ("usd", "atomic"),
    [
        pytest.param(5.0, "5000000", id="float"),
        pytest.param(0.1, "100000", id="float-0.1-no-binary-surprise"),
        pytest.param(2.675, "2675000", id="float-2.675"),
        pytest.param(0.000001, "1", id="one-micro"),
        pytest.param(20, "20000000", id="int"),
        pytest.param("1.5", "1500000", id="str"),
        pytest.param(Decimal("100"), "100000000", id="decimal"),
    ],
)
def test_usd_to_atomic(usd: float | int | str | Decimal, atomic: str) -> None:
    assert networks.usd_to_atomic(usd) == atomic


@pytest.mark.parametrize(
    "usd",
    [
        pytest.param(0.0, id="zero"),
        pytest.param(-1.0, id="negative"),
        pytest.param(1e-7, id="sub-micro"),
        pytest.param(0.1234567, id="seven-decimals"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param("five", id="not-a-number"),
        pytest.param(True, id="bool"),
        pytest.param("1e90", id="beyond-uint256"),
    ],
)
def test_usd_to_atomic_refuses(usd: Any) -> None:
    with pytest.raises(ValueError, match="USD amount"):
        networks.usd_to_atomic(usd)


def test_network_constants_are_spec_section_10() -> None:
    assert networks.network("eip155:8453") == networks.BASE
    assert (networks.BASE.eip712_name, networks.BASE.eip712_version) == ("USD Coin", "2")
    assert (networks.BASE_SEPOLIA.eip712_name, networks.BASE_SEPOLIA.chain_id) == ("USDC", 84532)
    assert networks.SOLANA_DEVNET.usdc_mint == "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
    assert networks.V1_NETWORK_NAMES == {
        "base": "eip155:8453",
        "base-sepolia": "eip155:84532",
        "solana": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        "solana-devnet": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    }
    assert networks.network("eip155:1") is None


@pytest.mark.parametrize(
    ("kw", "amounts"),
    [
        pytest.param({}, ("5000000", "1000000", "10000000", "20000000"), id="defaults"),
        pytest.param(
            {"topup_usd": 2.5, "topup_tiers_usd": (20.0, 1.0, 1.0, 2.5)},
            ("2500000", "1000000", "20000000"),
            id="unsorted-duplicates-default-among-tiers",
        ),
        pytest.param(
            {"topup_usd": 1.0, "topup_tiers_usd": (5.0, 50.0), "max_topup_usd": 10.0},
            ("1000000", "5000000"),
            id="tier-above-max-left-out",
        ),
        pytest.param({"topup_tiers_usd": ()}, ("5000000",), id="no-tiers"),
    ],
)
def test_topup_amounts(kw: dict[str, Any], amounts: tuple[str, ...]) -> None:
    assert topup_amounts(cfg(**kw)) == amounts


def evm(network: networks.EvmNetwork, amount: str) -> dict[str, Any]:
    return {
        "scheme": "exact",
        "network": network.caip2,
        "amount": amount,
        "asset": network.usdc,
        "payTo": PAY_TO_EVM_55,
        "maxTimeoutSeconds": 300,
        "extra": {"name": network.eip712_name, "version": network.eip712_version},
    }


def test_payment_required_whole_object() -> None:
    c = cfg(
        topup_tiers_usd=(1.0, 5.0),
        networks=(
            "eip155:8453",
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
            "eip155:84532",
        ),
    )
    obj = payment_required(
        c,
        resource_url="https://gw.example/v1/chat/completions",
        description="LLM API credit",
        mime_type="application/json",
        error="Payment required",
        solana_fee_payers={"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": FEE_PAYER},
        siwx=SIWX,
    )
    sol = {
        "scheme": "exact",
        "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        "asset": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "payTo": PAY_TO_SOL,
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": FEE_PAYER},
    }
    assert obj == {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {
            "url": "https://gw.example/v1/chat/completions",
            "description": "LLM API credit",
            "mimeType": "application/json",
        },
        "accepts": [
            evm(networks.BASE, "5000000"),
            evm(networks.BASE, "1000000"),
            sol | {"amount": "5000000"},
            sol | {"amount": "1000000"},
            # Solana devnet has no fee payer: left out.
            evm(networks.BASE_SEPOLIA, "5000000"),
            evm(networks.BASE_SEPOLIA, "1000000"),
        ],
        "extensions": {"sign-in-with-x": SIWX},
    }


def test_payment_required_without_error_or_siwx() -> None:
    obj = payment_required(
        cfg(topup_tiers_usd=()),
        resource_url="https://gw.example/v1/messages",
        description="",
        mime_type="application/json",
        error=None,
        solana_fee_payers={},
        siwx=None,
    )
    assert list(obj) == ["x402Version", "resource", "accepts"]
    assert obj["accepts"] == [evm(networks.BASE, "5000000")]


def test_encode_header_is_standard_base64_of_compact_json() -> None:
    obj = {"a": [1, "é"], "b": {"c": None}}
    header = encode_header(obj)
    assert base64.b64decode(header, validate=True) == '{"a":[1,"é"],"b":{"c":null}}'.encode()
    assert decode_header(header) == obj
    assert decode_header(header.rstrip("=")) == obj  # unpadded is read too


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("", "not standard base64", id="empty"),
        pytest.param("eyJhIjoxfQ-_", "not standard base64", id="url-safe"),
        pytest.param("e yJ", "not standard base64", id="space"),
        pytest.param("éé", "not standard base64", id="non-ascii"),
        pytest.param("eyJhIjox", "not base64 of UTF-8 JSON", id="truncated-json"),
        pytest.param("a", "not base64 of UTF-8 JSON", id="bad-length"),
        pytest.param(b64(b"\xff\xfe{}"), "not base64 of UTF-8 JSON", id="not-utf8"),
        pytest.param(b64("[1]"), "not a JSON object", id="array"),
        pytest.param(b64('"x"'), "not a JSON object", id="string"),
        pytest.param(b64('{"a":1,"a":2}'), "not base64 of UTF-8 JSON", id="duplicate-key"),
        pytest.param(b64('{"a":NaN}'), "not base64 of UTF-8 JSON", id="nan"),
        pytest.param(b64('{"a":-Infinity}'), "not base64 of UTF-8 JSON", id="infinity"),
        pytest.param(b64('{"a":' + "9" * 5000 + "}"), "not base64 of UTF-8 JSON", id="huge-int"),
        pytest.param(b64('{"a":' + "[" * 9000 + "]" * 9000 + "}"), "too large", id="too-large"),
        pytest.param(b64("[" * 12000), "not base64 of UTF-8 JSON", id="deep-unclosed"),
        pytest.param(b64('{"a":' + "[" * 5000 + "]" * 5000 + "}"), "not base64", id="recursion"),
        pytest.param(
            b64('{"a":' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}"),
            "nested too deeply",
            id="depth-33",
        ),
    ],
)
def test_decode_header_refuses(value: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why) as info:
        decode_header(value, name="PAYMENT-SIGNATURE")
    assert (info.value.status, info.value.code) == (400, None)  # SPEC §13: no code
    assert "PAYMENT-SIGNATURE" in info.value.message


def test_decode_header_depth_limit_is_inclusive() -> None:
    depth = MAX_JSON_DEPTH - 1  # the outer object is level 1
    assert decode_header(b64('{"a":' + "[" * depth + "]" * depth + "}"))["a"]


def test_header_size_limit_is_inclusive() -> None:
    padding = "x" * (MAX_HEADER_CHARS // 4 * 3 - 12)
    header = encode_header({"p": padding})
    assert len(header) <= MAX_HEADER_CHARS
    assert decode_header(header) == {"p": padding}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_decode_header_arbitrary_input(value: str | bytes) -> None:
    _dict_or_400(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decode_header_arbitrary_base64_payload(raw: bytes) -> None:
    _dict_or_400(base64.b64encode(raw))


def _dict_or_400(value: str | bytes) -> None:
    """decode_header gives a dict or raises BadRequest 400; anything else fails the test."""
    try:
        obj: object = decode_header(value)
    except BadRequest as exc:
        obj = exc.status
    assert isinstance(obj, dict) or obj == 400


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), JSON, max_size=5))
def test_encode_decode_round_trip(obj: dict[str, Any]) -> None:
    assert decode_header(encode_header(obj)) == obj


ADVERTISED = [evm(networks.BASE, "5000000"), evm(networks.BASE, "1000000")]


@pytest.mark.parametrize(
    ("change", "found"),
    [
        pytest.param({}, 0, id="the-default"),
        pytest.param({"amount": "1000000"}, 1, id="a-tier"),
        pytest.param({"amount": "4999999"}, None, id="amount"),
        pytest.param({"amount": 5000000}, None, id="amount-as-number"),
        pytest.param({"network": "eip155:84532"}, None, id="network"),
        pytest.param({"payTo": PAY_TO_EVM}, None, id="payTo-other-spelling"),
        pytest.param({"asset": networks.BASE_SEPOLIA.usdc}, None, id="asset"),
        pytest.param({"maxTimeoutSeconds": 60}, None, id="timeout"),
        pytest.param({"maxTimeoutSeconds": 300.0}, None, id="timeout-as-float"),
        pytest.param({"scheme": "upto"}, None, id="scheme"),
        pytest.param({"extra": {"name": "USDC", "version": "2"}}, None, id="extra"),
        pytest.param({"extra": {"name": "USD Coin", "version": "2", "x": 1}}, None, id="extra+"),
        pytest.param({"memo": "x"}, None, id="extra-field"),
    ],
)
def test_find_accepted_needs_equality(change: dict[str, Any], found: int | None) -> None:
    accepted = ADVERTISED[0] | change
    expected = None if found is None else ADVERTISED[found]
    assert find_accepted(accepted, ADVERTISED) == expected


def test_find_accepted_ignores_key_order() -> None:
    accepted = dict(reversed(list(ADVERTISED[1].items())))
    assert find_accepted(accepted, ADVERTISED) is ADVERTISED[1]


def test_payment_response_objects() -> None:
    ok = payment_response(transaction="0xabc", network="eip155:8453", payer="0x1", jwt="j.w.t")
    assert ok == {
        "success": True,
        "transaction": "0xabc",
        "network": "eip155:8453",
        "payer": "0x1",
        "jwt": "j.w.t",
    }
    bad = payment_failure(error_reason="insufficient_funds", network="eip155:8453", payer="0x1")
    assert bad == {
        "success": False,
        "errorReason": "insufficient_funds",
        "transaction": "",
        "network": "eip155:8453",
        "payer": "0x1",
    }
    assert "payer" not in payment_failure(error_reason="x", network="eip155:8453")
    # The x402 client reads both (x402-siwx.md §1.5).
    settle = decode_payment_response_header(encode_header(bad))
    assert (settle.success, settle.error_reason, settle.transaction) == (
        False,
        "insufficient_funds",
        "",
    )


def test_the_x402_client_reads_payment_required() -> None:
    c = cfg(networks=("eip155:84532", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"))
    obj = payment_required(
        c,
        resource_url="https://gw.example/v1/chat/completions",
        description="LLM API credit",
        mime_type="application/json",
        error="Payment required",
        solana_fee_payers={"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": FEE_PAYER},
        siwx=SIWX,
    )
    header = encode_header(obj)
    model = decode_payment_required_header(header)
    assert model.model_dump(by_alias=True, exclude_none=True) == obj
    # The HTTP client finds it in the PAYMENT-REQUIRED header of a 402 (x402-siwx.md §7).
    http = x402HTTPClientSync(register_exact_evm_client(x402ClientSync(), _account()))
    parsed = http.get_payment_required_response(
        lambda name: header if name.upper() == "PAYMENT-REQUIRED" else None, b"{}"
    )
    assert parsed.model_dump(by_alias=True, exclude_none=True) == obj
    assert json.loads(base64.b64decode(header)) == obj


def _account() -> Any:
    from eth_account import Account

    return Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


@pytest.mark.parametrize(
    "c",
    [
        pytest.param(cfg(pay_to_evm=""), id="evm-without-pay-to"),
        pytest.param(
            cfg(pay_to_solana="", networks=("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",)),
            id="solana-without-pay-to",
        ),
        pytest.param(cfg(networks=("eip155:1",)), id="unknown-network"),
    ],
)
def test_a_network_that_cannot_be_paid_is_left_out(c: X402Config) -> None:
    fee_payers = {"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": FEE_PAYER}
    assert payment_required(
        c, resource_url="u", description="", mime_type="application/json", error=None,
        solana_fee_payers=fee_payers, siwx=None,
    )["accepts"] == []  # fmt: skip
