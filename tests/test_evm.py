"""aroutd.auth.evm: keccak256, EIP-191, EIP-55 and recovery, against committed vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.auth import evm
from aroutd.errors import BadRequest, HTTPError, Unauthorized

VECTORS = Path(__file__).parent / "vectors"
EIP55 = json.loads((VECTORS / "eip55.json").read_text())["vectors"]
EIP191 = json.loads((VECTORS / "eip191.json").read_text())["vectors"]
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDR0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
# x402-siwx.md §6.3: personal_sign("hello") with key #0.
HELLO_SIG = (
    "0xf16ea9a3478698f695fd1401bfe27e9e4a7e8e3da94aa72b021125e31fa899cc"
    "573c48ea3fe1d4ab61a9db10c19032026e3ed2dbccba5a178235ac27f94504311c"
)


def split(sig: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(sig.removeprefix("0x"))
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def join(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v,))).hex()


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        # The empty-input Keccak-256 (differs from SHA3-256's a7ffc6f8…).
        pytest.param(
            b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470", id="empty"
        ),
        pytest.param(
            b"\x19Ethereum Signed Message:\n5hello",
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750",
            id="eip191-hello",
        ),
    ],
)
def test_keccak256(data: bytes, digest: str) -> None:
    assert evm.keccak256(data).hex() == digest


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["input"]) for v in EIP55])
def test_eip55_vectors(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["input"][2:])
    assert evm.to_checksum_address(raw) == vector["checksum"]
    if vector["valid"]:
        assert evm.parse_address(vector["input"]) == raw
    else:
        with pytest.raises(BadRequest) as info:
            evm.parse_address(vector["input"])
        assert info.value.message == "malformed address: bad EIP-55 checksum"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ADDR0.lower(), id="all-lower"),
        pytest.param("0x" + ADDR0[2:].upper(), id="all-upper"),
        pytest.param(ADDR0, id="checksummed"),
    ],
)
def test_addresses_without_or_with_valid_checksum(text: str) -> None:
    assert evm.parse_address(text) == bytes.fromhex(ADDR0[2:])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ADDR0[2:], id="no-0x"),
        pytest.param("0X" + ADDR0[2:], id="0X"),
        pytest.param(ADDR0[:-1], id="39-hex"),
        pytest.param(ADDR0 + "0", id="41-hex"),
        pytest.param(ADDR0[:-1] + "g", id="not-hex"),
        pytest.param(" " + ADDR0, id="space"),
        pytest.param("0x" + "٣" * 40, id="unicode-digits"),
    ],
)
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        evm.parse_address(text)
    assert (info.value.status, info.value.message) == (400, "malformed address")


@pytest.mark.parametrize("vector", [pytest.param(v, id=repr(v["message"])) for v in EIP191])
def test_eip191_vectors(vector: dict[str, Any]) -> None:
    message = vector["message"].encode()
    assert "0x" + evm.eip191_hash(message).hex() == vector["hash"]
    address = evm.parse_address(vector["address"])
    assert (
        evm.recover_address(evm.eip191_hash(message), evm.decode_signature(vector["signature"]))
        == address
    )
    evm.verify_personal_sign(message, vector["signature"], address)


def test_hello_vector_from_reference() -> None:
    evm.verify_personal_sign(b"hello", HELLO_SIG, evm.parse_address(ADDR0))


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda r, s, v: (r, s, v - 27), id="v-0-1"),
        pytest.param(lambda r, s, v: (r, s, v), id="v-27-28"),
    ],
)
def test_v_forms(transform: Any) -> None:
    sig = join(*transform(*split(HELLO_SIG)))
    evm.verify_personal_sign(b"hello", sig, evm.parse_address(ADDR0))
    evm.verify_personal_sign(b"hello", sig.removeprefix("0x"), evm.parse_address(ADDR0))


def _bad_signatures() -> list[Any]:
    r, s, v = split(HELLO_SIG)
    n = evm.SECP256K1_N
    return [
        # (r, n - s, v ^ 1) is the same key's malleable twin; EIP-2 allows only low s.
        pytest.param(join(r, n - s, 27 + 28 - v), id="high-s"),
        pytest.param(join(r, s, 29), id="v-29"),
        pytest.param(join(r, s, 2), id="v-2"),
        pytest.param(join(r, s, 37), id="v-eip155"),
        pytest.param(join(0, s, v), id="r-zero"),
        pytest.param(join(r, 0, v), id="s-zero"),
        pytest.param(join(n, s, v), id="r-n"),
        pytest.param(join(r, s, 55 - v), id="other-v"),
        pytest.param(HELLO_SIG[:-2], id="64-bytes"),
        pytest.param(HELLO_SIG + "00", id="66-bytes"),
        pytest.param("", id="empty"),
        pytest.param("0x" + "zz" * 65, id="not-hex"),
    ]


@pytest.mark.parametrize("sig", _bad_signatures())
def test_bad_signatures_are_401(sig: str) -> None:
    with pytest.raises(Unauthorized) as info:
        evm.verify_personal_sign(b"hello", sig, evm.parse_address(ADDR0))
    assert (info.value.status, info.value.message) == (401, "invalid signature")


def test_upper_case_hex_signature() -> None:
    evm.verify_personal_sign(b"hello", "0x" + HELLO_SIG[2:].upper(), evm.parse_address(ADDR0))


def test_high_s_twin_really_recovers_the_same_key() -> None:
    """The high-s vector is meaningful: without the EIP-2 check it would verify."""
    r, s, v = split(HELLO_SIG)
    twin = join(r, evm.SECP256K1_N - s, 27 + 28 - v)
    assert Account.recover_message(encode_defunct(text="hello"), signature=twin) == ADDR0


def test_other_message_or_signer_is_401() -> None:
    other = Account.from_key("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
    with pytest.raises(Unauthorized, match="invalid signature"):
        evm.verify_personal_sign(b"hello!", HELLO_SIG, evm.parse_address(ADDR0))
    with pytest.raises(Unauthorized, match="invalid signature"):
        evm.verify_personal_sign(b"hello", HELLO_SIG, evm.parse_address(other.address))


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.text(max_size=200))
def test_ours_agrees_with_eth_account(key: bytes, text: str) -> None:
    try:
        account = Account.from_key(key)
    except Exception:  # not a valid secp256k1 scalar; hypothesis rarely finds one
        return
    sig = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
    assert evm.to_checksum_address(evm.parse_address(account.address)) == account.address
    evm.verify_personal_sign(text.encode(), sig, evm.parse_address(account.address))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=140) | st.from_regex(r"(0x)?[0-9a-fA-F]{40,130}", fullmatch=True))
def test_parsers_accept_or_raise_our_errors(text: str) -> None:
    for parse, status in ((evm.parse_address, 400), (evm.decode_signature, 401)):
        try:
            parse(text)
            continue
        except HTTPError as exc:
            got = exc.status
        assert got == status
