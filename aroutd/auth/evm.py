"""EVM sign-in crypto (SPEC §8): keccak256, EIP-191, EIP-55 and secp256k1 recovery.

Pure functions over values:

- keccak256 is the original Keccak (pycryptodome ``Crypto.Hash.keccak``), not the
  NIST SHA3-256 of ``hashlib``: they differ in padding and give other digests.
- EIP-191 version 0x45 (``personal_sign``): keccak256 of
  ``"\\x19Ethereum Signed Message:\\n" + decimal byte length + message``.
- A signature is 65 bytes ``r ‖ s ‖ v`` in hex, v 27/28 or 0/1. High-s signatures are
  malleable copies (EIP-2) and are rejected, as is any r or s outside [1, n).
- The address is the last 20 bytes of keccak256 of the 64-byte uncompressed public key.
- EIP-55: an address in mixed case must carry a valid checksum; all-lower and
  all-upper hex are valid but carry none.

Errors: a malformed address is 400 ``malformed address`` (``malformed address: bad
EIP-55 checksum`` for a wrong checksum); anything wrong with a signature is 401
``invalid signature``.
"""

from __future__ import annotations

import operator
import re

from coincurve import PublicKey
from Crypto.Hash import keccak

from aroutd.errors import BadRequest, Unauthorized

__all__ = [
    "SECP256K1_N",
    "address_of_public_key",
    "decode_signature",
    "eip191_hash",
    "keccak256",
    "parse_address",
    "parse_checksummed",
    "recover_address",
    "to_checksum_address",
    "verify_personal_sign",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_SIGNATURE_RE = re.compile(r"(?:0x)?[0-9a-fA-F]{130}", re.ASCII)
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
# (address hex char + digest hex char) -> the address char in EIP-55 case.
_EIP55_CASE = {
    c + d: c.upper() if d in "89abcdef" else c
    for c in "0123456789abcdef"
    for d in "0123456789abcdef"
}


def keccak256(data: bytes) -> bytes:
    digest: bytes = keccak.new(data=data, digest_bits=256).digest()
    return digest


def eip191_hash(message: bytes) -> bytes:
    """The digest ``personal_sign`` signs (EIP-191 version 0x45); length in bytes, decimal."""
    return keccak256(_EIP191_PREFIX + str(len(message)).encode() + message)


def to_checksum_address(address: bytes) -> str:
    """EIP-55: uppercase hex letter i when nibble i of keccak256(lowercase hex) is >= 8."""
    hex_ = address.hex()
    digest = keccak256(hex_.encode()).hex()
    return "0x" + "".join(map(_EIP55_CASE.__getitem__, map(operator.add, hex_, digest)))


def parse_address(text: str) -> bytes:
    """The 20 address bytes of ``0x`` + 40 hex; a mixed-case spelling must be EIP-55."""
    return parse_checksummed(text)[0]


def parse_checksummed(text: str) -> tuple[bytes, str]:
    """:func:`parse_address` and the EIP-55 spelling, hashing at most once."""
    if not _ADDRESS_RE.fullmatch(text):
        raise BadRequest("malformed address")
    address = bytes.fromhex(text[2:])
    hex_ = text[2:]
    checksummed = to_checksum_address(address)
    if hex_ != hex_.lower() and hex_ != hex_.upper() and checksummed != text:
        raise BadRequest("malformed address: bad EIP-55 checksum")
    return address, checksummed


def decode_signature(text: str) -> bytes:
    """65 bytes ``r ‖ s ‖ recovery id`` (0/1) from the hex ``r ‖ s ‖ v`` form.

    Rejects v outside {0, 1, 27, 28}, r or s outside [1, n), and s > n/2 (EIP-2).
    """
    if not _SIGNATURE_RE.fullmatch(text):
        raise Unauthorized("invalid signature")
    raw = bytes.fromhex(text[2:] if text[:2] == "0x" else text)
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1) or not 0 < r < SECP256K1_N or not 0 < s <= _HALF_N:
        raise Unauthorized("invalid signature")
    return raw[:64] + bytes((v,))


def address_of_public_key(public_key: bytes) -> bytes:
    """Last 20 bytes of keccak256 of the 64-byte key (the uncompressed form without 0x04)."""
    return keccak256(public_key[-64:])[12:]


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The address whose key made ``signature`` (from :func:`decode_signature`) over ``digest``."""
    try:
        key = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except (ValueError, TypeError):
        raise Unauthorized("invalid signature") from None
    return address_of_public_key(key.format(compressed=False))


def verify_personal_sign(message: bytes, signature: str, address: bytes) -> None:
    """401 ``invalid signature`` unless ``signature`` is ``address``'s personal_sign of it."""
    recovered = recover_address(eip191_hash(message), decode_signature(signature))
    if recovered != address:
        raise Unauthorized("invalid signature")
