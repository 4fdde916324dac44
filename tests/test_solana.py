"""aroutd.auth.solana: base58, addresses, ed25519 signatures (solders as the independent signer)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair

from aroutd.auth import solana
from aroutd.errors import BadRequest, HTTPError, Unauthorized

BASE58 = json.loads((Path(__file__).parent / "vectors" / "base58.json").read_text())["vectors"]
# x402-siwx.md §6.4: ed25519 seed 01..20.
KEYPAIR = Keypair.from_seed(bytes(range(1, 33)))
ADDRESS = "9C6hybhQ6Aycep9jaUnP6uL9ZYvDjUp1aSkFWPUFJtpj"
PUBKEY_HEX = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["base58"] or "empty") for v in BASE58])
def test_base58_vectors(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    assert solana.b58encode(raw) == vector["base58"]
    assert solana.b58decode(vector["base58"]) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_base58_round_trip(data: bytes) -> None:
    assert solana.b58decode(solana.b58encode(data)) == data


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "abc+", "é"])
def test_base58_foreign_characters(text: str) -> None:
    with pytest.raises(BadRequest, match="malformed base58"):
        solana.b58decode(text)


def test_reference_address() -> None:
    assert str(KEYPAIR.pubkey()) == ADDRESS
    assert solana.parse_address(ADDRESS).hex() == PUBKEY_HEX


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ADDRESS[:-4], id="30-bytes"),
        pytest.param(ADDRESS + "1", id="too-long"),
        pytest.param("1" + ADDRESS[:-1], id="leading-zero-spelling"),
        pytest.param(ADDRESS[:-1] + "0", id="not-base58"),
        pytest.param("", id="empty"),
        pytest.param("0x" + "ab" * 20, id="evm-address"),
    ],
)
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        solana.parse_address(text)
    assert (info.value.status, info.value.message) == (400, "malformed address")


def test_all_zero_key_spelling_is_canonical() -> None:
    # 32 zero bytes are 32 "1"s: valid, though no wallet has this key.
    assert solana.parse_address("1" * 32) == bytes(32)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(solana.b58encode, id="base58"),
        pytest.param(lambda b: base64.b64encode(b).decode(), id="base64"),
        pytest.param(lambda b: base64.b64encode(b).decode().rstrip("="), id="base64-unpadded"),
    ],
)
def test_signature_encodings(encode: Any) -> None:
    message = "héllo ✓".encode()
    sig = bytes(KEYPAIR.sign_message(message))
    assert solana.decode_signature(encode(sig)) == sig
    solana.verify_signature(
        message, solana.decode_signature(encode(sig)), solana.parse_address(ADDRESS)
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(solana.b58encode(bytes(range(1, 64))), id="63-bytes-base58"),
        pytest.param(base64.b64encode(bytes(65)).decode(), id="65-bytes-base64"),
        pytest.param("x" * 101, id="too-long"),
        pytest.param("0x" + "ab" * 64, id="hex"),
    ],
)
def test_undecodable_signatures_are_401(text: str) -> None:
    with pytest.raises(Unauthorized) as info:
        solana.decode_signature(text)
    assert (info.value.status, info.value.message) == (401, "invalid signature")


def test_wrong_message_key_or_signature_is_401() -> None:
    sig = bytes(KEYPAIR.sign_message(b"hello"))
    key = solana.parse_address(ADDRESS)
    other = bytes(Keypair.from_seed(bytes([7] * 32)).pubkey())
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    for message, signature, public_key in (
        (b"hellO", sig, key),
        (b"hello", sig, other),
        (b"hello", flipped, key),
        (b"hello", sig, bytes(32)),  # not a curve point
    ):
        with pytest.raises(Unauthorized, match="invalid signature"):
            solana.verify_signature(message, signature, public_key)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_parsers_accept_or_raise_our_errors(text: str) -> None:
    for parse, status in (
        (solana.b58decode, 400),
        (solana.parse_address, 400),
        (solana.decode_signature, 401),
    ):
        try:
            parse(text)
            continue
        except HTTPError as exc:
            got = exc.status
        assert got == status
