"""Exact on EVM: the EIP-3009 authorization, verified locally (SPEC §10).

The digest (x402-siwx.md §2.2, EIP-712 and EIP-3009)::

    domainSeparator = keccak256(EIP712Domain_typehash ‖ keccak256(name) ‖ keccak256(version)
                                ‖ uint256(chainId) ‖ address(verifyingContract = the token))
    structHash = keccak256(TransferWithAuthorization_typehash ‖ from ‖ to ‖ value
                           ‖ validAfter ‖ validBefore ‖ nonce)        (each a 32-byte word)
    digest = keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash)

:func:`verify_evm` checks, in the Python facilitator's order (§2.4), and answers the
first failure's code: scheme ``exact`` (``unsupported_scheme``); the payment's
network is the requirement's (``network_mismatch``) and a known ``eip155`` chain
(``invalid_network``); the requirement's ``extra`` names the domain
(``missing_eip712_domain``); ``to`` == ``payTo``, case-insensitively (``…recipient_
mismatch``); ``value`` == ``amount`` exactly (``…authorization_value_mismatch``);
``now <= validBefore - 6`` (``…valid_before``; the 6 s leave the facilitator time to
settle); ``validAfter <= now`` (``…valid_after``); a 65-byte EOA signature, low-s
(EIP-2; USDC's own ecrecover refuses high s too) that recovers to ``from``
(``…signature``). Smart-wallet signatures (EIP-1271, ERC-6492) and EIP-2098 compact
signatures need RPC or are not in the reference, and are refused with ``…signature``.

Pure: ``now`` is given, in Unix seconds. The replay identity is in
:attr:`~aroutd.x402.reasons.Verified.replay_key`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aroutd.auth.evm import decode_signature, keccak256, recover_address, to_checksum_address
from aroutd.errors import Unauthorized
from aroutd.x402 import reasons
from aroutd.x402.payload import EvmAuthorization, EvmPayload, PaymentPayload
from aroutd.x402.reasons import Refused, Verified
from aroutd.x402.requirements import SCHEME_EXACT

__all__ = [
    "DOMAIN_TYPEHASH",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "VALID_BEFORE_MARGIN_S",
    "domain_separator",
    "struct_hash",
    "transfer_with_authorization_digest",
    "verify_evm",
]

DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
    b"TransferWithAuthorization(address from,address to,uint256 value,"
    b"uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
# SPEC §10: validAfter <= now <= validBefore - 6 s (x402-siwx.md §2.4 step 7).
VALID_BEFORE_MARGIN_S = 6
_CHAIN_RE = re.compile(r"eip155:([1-9][0-9]{0,17})", re.ASCII)
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def domain_separator(*, name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 domain separator of the token (x402-siwx.md §2.1)."""
    return keccak256(
        DOMAIN_TYPEHASH
        + keccak256(name.encode())
        + keccak256(version.encode())
        + _word(chain_id)
        + _address_word(verifying_contract)
    )


def struct_hash(authorization: EvmAuthorization) -> bytes:
    """hashStruct(TransferWithAuthorization) (EIP-3009, x402-siwx.md §2.2)."""
    a = authorization
    return keccak256(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + _address_word(a.from_address)
        + _address_word(a.to)
        + _word(a.value)
        + _word(a.valid_after)
        + _word(a.valid_before)
        + a.nonce
    )


def transfer_with_authorization_digest(
    authorization: EvmAuthorization,
    *,
    chain_id: int,
    verifying_contract: str,
    name: str,
    version: str,
) -> bytes:
    """The 32-byte EIP-712 digest the payer signed."""
    domain = domain_separator(
        name=name, version=version, chain_id=chain_id, verifying_contract=verifying_contract
    )
    return keccak256(b"\x19\x01" + domain + struct_hash(authorization))


def _domain(requirement: Mapping[str, Any]) -> tuple[int, str, str, str] | Refused:
    """(chainId, token, name, version) of the requirement, or the refusal."""
    match = _CHAIN_RE.fullmatch(str(requirement.get("network")))
    asset = requirement.get("asset")
    if match is None or not isinstance(asset, str) or not _ADDRESS_RE.fullmatch(asset):
        return Refused(reason=reasons.INVALID_NETWORK, message="not an EVM network and token")
    extra = requirement.get("extra")
    name = extra.get("name") if isinstance(extra, Mapping) else None
    version = extra.get("version") if isinstance(extra, Mapping) else None
    if not isinstance(name, str) or not isinstance(version, str):
        return Refused(reason=reasons.EVM_MISSING_EIP712_DOMAIN, message="no EIP-712 name/version")
    return int(match.group(1)), asset, name, version


def _terms(a: EvmAuthorization, requirement: Mapping[str, Any], now: int) -> Refused | None:
    """Steps 5-8 of x402-siwx.md §2.4: recipient, value, then the time window."""
    pay_to = requirement.get("payTo")
    if not isinstance(pay_to, str) or a.to.lower() != pay_to.lower():
        return Refused(reason=reasons.EVM_RECIPIENT_MISMATCH, message="to is not payTo")
    if str(a.value) != requirement.get("amount"):
        return Refused(reason=reasons.EVM_VALUE_MISMATCH, message="value is not the amount")
    if now > a.valid_before - VALID_BEFORE_MARGIN_S:
        return Refused(reason=reasons.EVM_VALID_BEFORE, message="validBefore too soon or past")
    if a.valid_after > now:
        return Refused(reason=reasons.EVM_VALID_AFTER, message="validAfter in the future")
    return None


def _signed_by(digest: bytes, signature: bytes, address: str) -> bool:
    """An EOA signature r ‖ s ‖ v (v 27/28 or 0/1), low s, that recovers to ``address``."""
    if len(signature) != 65 or int(address, 16) == 0:
        return False  # EIP-3009: the zero address is what a failed ecrecover returns
    try:
        recovered = recover_address(digest, decode_signature("0x" + signature.hex()))
    except Unauthorized:
        return False
    return to_checksum_address(recovered).lower() == address.lower()


def verify_evm(
    payment: PaymentPayload, requirement: Mapping[str, Any], now: int
) -> Verified | Refused:
    """Local verification of an exact EVM payment against the matched requirement."""
    if payment.scheme != SCHEME_EXACT or requirement.get("scheme") != SCHEME_EXACT:
        return Refused(reason=reasons.UNSUPPORTED_SCHEME, message="scheme is not exact")
    if payment.network != requirement.get("network"):
        return Refused(reason=reasons.NETWORK_MISMATCH, message="network is not the requirement's")
    domain = _domain(requirement)
    if isinstance(domain, Refused):
        return domain
    evm = payment.payload
    if not isinstance(evm, EvmPayload):
        return Refused(reason=reasons.INVALID_PAYLOAD, message="not an EIP-3009 payload")
    a = evm.authorization
    refused = _terms(a, requirement, now)
    if refused is not None:
        return refused
    chain_id, token, name, version = domain
    digest = transfer_with_authorization_digest(
        a, chain_id=chain_id, verifying_contract=token, name=name, version=version
    )
    if not _signed_by(digest, evm.signature, a.from_address):
        return Refused(reason=reasons.EVM_SIGNATURE, message="signature does not recover to from")
    return Verified(
        network=payment.network,
        payer=a.from_address,
        amount=str(a.value),
        replay_key=f"{payment.network}/{a.from_address.lower()}/0x{a.nonce.hex()}",
    )
