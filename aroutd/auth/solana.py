"""Solana sign-in crypto (SPEC §8): base58, 32-byte addresses, ed25519 with PyNaCl.

Pure functions over values. The rules, from x402-siwx.md §5.5:

- an address is the base58 (Bitcoin alphabet) of a 32-byte ed25519 public key;
- a signature is 64 bytes, sent as base58 (x402) or standard base64 (ARouter Go SDK);
- the signature covers the raw UTF-8 message bytes: no prefix, no hashing.

Errors: a malformed address is 400 ``malformed address``; anything wrong with a
signature (encoding, length, the ed25519 check itself) is 401 ``invalid signature``.
"""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from aroutd.errors import BadRequest, Unauthorized

__all__ = [
    "ADDRESS_LEN",
    "SIGNATURE_LEN",
    "b58decode",
    "b58encode",
    "decode_signature",
    "parse_address",
    "verify_signature",
]

ADDRESS_LEN = 32
SIGNATURE_LEN = 64
# 64 bytes are at most 88 base58 or base64 characters; anything longer is not a signature.
_MAX_SIGNATURE_CHARS = 100
_MAX_ADDRESS_CHARS = 44

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet); each leading zero byte becomes a leading ``1``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out: list[str] = []
    while num:
        num, rem = divmod(num, 58)
        out.append(_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The inverse of :func:`b58encode`; 400 ``malformed base58`` on a foreign character."""
    num = 0
    try:
        for char in text:
            num = num * 58 + _INDEX[char]
    except KeyError:
        raise BadRequest("malformed base58") from None
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + (num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b"")


def parse_address(text: str) -> bytes:
    """The 32-byte public key of a base58 address, in its one canonical spelling."""
    if not 32 <= len(text) <= _MAX_ADDRESS_CHARS:
        raise BadRequest("malformed address")
    try:
        key = b58decode(text)
    except BadRequest:
        raise BadRequest("malformed address") from None
    # Length alone would let "1" + address (an extra leading zero byte) through as 33 bytes,
    # so this also pins the spelling: the account id is the address as given (SPEC §8).
    if len(key) != ADDRESS_LEN or b58encode(key) != text:
        raise BadRequest("malformed address")
    return key


def decode_signature(text: str) -> bytes:
    """64 signature bytes from base58 (tried first) or base64 (padded or not)."""
    if 0 < len(text) <= _MAX_SIGNATURE_CHARS:
        try:
            raw = b58decode(text)
        except BadRequest:
            raw = b""
        if len(raw) == SIGNATURE_LEN:
            return raw
        # Base64 of 64 bytes carries "==" padding, which is not base58, so the two
        # encodings cannot be confused when the padding is present.
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == SIGNATURE_LEN:
            return raw
    raise Unauthorized("invalid signature")


def verify_signature(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Ed25519 over the raw message bytes; 401 ``invalid signature`` when it does not hold."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        raise Unauthorized("invalid signature") from None
