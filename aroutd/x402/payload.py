"""The payment a client sends, decoded once into typed values (SPEC §10).

- :func:`decode_payment_signature`: ``PAYMENT-SIGNATURE``, a v2 ``PaymentPayload``
  (x402-siwx.md §1.4): ``{x402Version: 2, accepted, payload, resource?, extensions?}``.
- :func:`decode_x_payment`: v1 ``X-PAYMENT``, ``{x402Version: 1, scheme, network,
  payload}`` with a v1 network name (``base-sepolia``); mapped to the same
  :class:`PaymentPayload` with the CAIP-2 network and ``accepted`` None. A v1 payload
  names no requirement, so :func:`select_requirement` picks the advertised one on its
  network whose amount the payment moves.
- The scheme payload is typed by the network's namespace: ``eip155:`` ->
  :class:`EvmPayload` (signature bytes, and an EIP-3009 authorization whose numbers are
  decimal strings, below 2^256, and whose nonce is ``0x`` + 64 hex, §2.2); ``solana:``
  -> :class:`SolanaPayload` (the base64 transaction as bytes, §3.1). Any other
  namespace keeps ``payload`` None: well formed, it just matches nothing.

Anything not well formed (base64, JSON, shape, sizes) is 400 ``invalid_request_error``
and a reason that never quotes the client's text. A
well-formed payment that does not hold is not decided here: see ``evm`` and ``solana``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aroutd.auth.evm import parse_checksummed
from aroutd.errors import BadRequest
from aroutd.x402 import solana
from aroutd.x402.networks import V1_NETWORK_NAMES
from aroutd.x402.requirements import decode_header, find_accepted

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "MAX_TRANSACTION_BYTES",
    "EvmAuthorization",
    "EvmPayload",
    "PaymentPayload",
    "SolanaPayload",
    "decode_payment_signature",
    "decode_x_payment",
    "select_requirement",
]

# 65 bytes for an EOA; EIP-1271 / ERC-6492 signatures are longer (§2.2), kept to refuse.
MAX_SIGNATURE_BYTES = 4096
# The Solana packet limit (1232 bytes) with room; the decoder refuses anything longer.
MAX_TRANSACTION_BYTES = 2048
_HEX_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*", re.ASCII)
_NONCE_RE = re.compile(r"0x[0-9a-fA-F]{64}", re.ASCII)
_UINT_RE = re.compile(r"0|[1-9][0-9]{0,77}", re.ASCII)
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_UINT256_LIMIT = 1 << 256


@dataclass(frozen=True, slots=True, kw_only=True)
class EvmAuthorization:
    """EIP-3009 ``TransferWithAuthorization`` fields (x402-siwx.md §2.2)."""

    from_address: str  # EIP-55 spelling
    to: str  # EIP-55 spelling
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes  # 32 bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EvmPayload:
    signature: bytes  # as sent; 65 bytes r ‖ s ‖ v for an EOA
    authorization: EvmAuthorization


@dataclass(frozen=True, slots=True, kw_only=True)
class SolanaPayload:
    transaction: bytes  # the serialized, partially signed VersionedTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentPayload:
    """A decoded ``PAYMENT-SIGNATURE`` or ``X-PAYMENT``; ``raw`` is the JSON as sent.

    ``raw`` is what the facilitator's ``/verify`` and ``/settle`` get as
    ``paymentPayload`` (x402-siwx.md §4); treat it and ``accepted`` as read-only.
    """

    x402_version: int  # 2 (PAYMENT-SIGNATURE) or 1 (X-PAYMENT)
    scheme: str
    network: str  # CAIP-2 (a v1 name is mapped)
    accepted: Mapping[str, Any] | None  # as sent; None for v1
    payload: EvmPayload | SolanaPayload | None  # None: a namespace aroutd has no scheme for
    resource: Mapping[str, Any] | None
    extensions: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False)


def decode_payment_signature(value: str | bytes) -> PaymentPayload:
    """``PAYMENT-SIGNATURE`` (v2) as a :class:`PaymentPayload`; 400 when malformed."""
    name = "PAYMENT-SIGNATURE"
    obj = decode_header(value, name=name)
    if _field(obj, "x402Version", int, name) != 2:
        raise _bad("PAYMENT-SIGNATURE", "x402Version must be 2")
    accepted = _field(obj, "accepted", dict, name)
    scheme = _field(accepted, "scheme", str, name, "accepted.scheme")
    network = _field(accepted, "network", str, name, "accepted.network")
    return PaymentPayload(
        x402_version=2,
        scheme=scheme,
        network=network,
        accepted=accepted,
        payload=_scheme_payload(network, _field(obj, "payload", dict, name), name),
        resource=_optional(obj, "resource", name),
        extensions=_optional(obj, "extensions", name),
        raw=obj,
    )


def decode_x_payment(value: str | bytes) -> PaymentPayload:
    """v1 ``X-PAYMENT`` as a :class:`PaymentPayload` (network mapped to CAIP-2)."""
    name = "X-PAYMENT"
    obj = decode_header(value, name=name)
    if _field(obj, "x402Version", int, name) != 1:
        raise _bad("X-PAYMENT", "x402Version must be 1")
    scheme = _field(obj, "scheme", str, name)
    v1_network = _field(obj, "network", str, name)
    network = V1_NETWORK_NAMES.get(v1_network, v1_network)
    return PaymentPayload(
        x402_version=1,
        scheme=scheme,
        network=network,
        accepted=None,
        payload=_scheme_payload(network, _field(obj, "payload", dict, name), name),
        resource=None,
        extensions=None,
        raw=obj,
    )


def select_requirement(
    payment: PaymentPayload, advertised: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The advertised requirement this payment is for, or None (SPEC §10).

    v2: the one ``accepted`` equals. v1: the one with the same scheme and network whose
    amount the payment moves (EVM ``value``; Solana the TransferChecked amount).
    """
    if payment.accepted is not None:
        return find_accepted(payment.accepted, advertised)
    moved = _moved_amount(payment.payload)
    for requirement in advertised:
        same = (requirement.get("scheme"), requirement.get("network")) == (
            payment.scheme,
            payment.network,
        )
        if same and moved is not None and requirement.get("amount") == str(moved):
            return requirement
    return None


def _moved_amount(payload: EvmPayload | SolanaPayload | None) -> int | None:
    if isinstance(payload, EvmPayload):
        return payload.authorization.value
    if isinstance(payload, SolanaPayload):
        return solana.transfer_amount(payload.transaction)
    return None


def _scheme_payload(
    network: str, obj: dict[str, Any], name: str
) -> EvmPayload | SolanaPayload | None:
    namespace = network.partition(":")[0]
    if namespace == "eip155":
        return _evm_payload(obj, name)
    if namespace == "solana":
        text = _field(obj, "transaction", str, name, "payload.transaction")
        return SolanaPayload(transaction=_base64(text, name))
    return None


def _evm_payload(obj: dict[str, Any], name: str) -> EvmPayload:
    signature = _field(obj, "signature", str, name, "payload.signature")
    if not _HEX_RE.fullmatch(signature) or len(signature) > 2 + 2 * MAX_SIGNATURE_BYTES:
        raise _bad(name, "payload.signature must be 0x hex")
    auth = _field(obj, "authorization", dict, name, "payload.authorization")
    nonce = _field(auth, "nonce", str, name, "authorization.nonce")
    if not _NONCE_RE.fullmatch(nonce):
        raise _bad(name, "authorization.nonce must be 0x + 64 hex")
    return EvmPayload(
        signature=bytes.fromhex(signature[2:]),
        authorization=EvmAuthorization(
            from_address=_address(auth, "from", name),
            to=_address(auth, "to", name),
            value=_uint256(auth, "value", name),
            valid_after=_uint256(auth, "validAfter", name),
            valid_before=_uint256(auth, "validBefore", name),
            nonce=bytes.fromhex(nonce[2:]),
        ),
    )


def _address(auth: dict[str, Any], key: str, name: str) -> str:
    text = _field(auth, key, str, name, f"authorization.{key}")
    try:
        return parse_checksummed(text)[1]
    except BadRequest:
        raise _bad(name, f"authorization.{key} must be a 0x address (EIP-55)") from None


def _uint256(auth: dict[str, Any], key: str, name: str) -> int:
    # Strings, decimal (x402-siwx.md §1.4); JSON numbers lose precision past 2^53.
    text = _field(auth, key, str, name, f"authorization.{key}")
    if not _UINT_RE.fullmatch(text) or int(text) >= _UINT256_LIMIT:
        raise _bad(name, f"authorization.{key} must be a decimal uint256 string")
    return int(text)


def _base64(text: str, name: str) -> bytes:
    if not _B64_RE.fullmatch(text) or len(text) > 4 * MAX_TRANSACTION_BYTES // 3 + 4:
        raise _bad(name, "payload.transaction must be standard base64 of a transaction")
    data = text.rstrip("=")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(name, "payload.transaction must be standard base64") from None


def _field(obj: dict[str, Any], key: str, kind: type, name: str, label: str = "") -> Any:
    value = obj.get(key)
    # bool is an int to Python, never to JSON.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(name, f"{label or key} must be a JSON {_KINDS[kind]}")
    return value


def _optional(obj: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    if obj.get(key) is None:
        return None
    value: dict[str, Any] = _field(obj, key, dict, name)
    return value


_KINDS = {int: "integer", str: "string", dict: "object"}


def _bad(name: str, why: str) -> BadRequest:
    return BadRequest(f"invalid {name} header: {why}")
