"""A payment header, checked locally against what was advertised (SPEC §10).

:func:`read_payment` takes the request's ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1)
header: none is None, a malformed one (or both, or one given twice) is 400.
:func:`check_payment` then finds the advertised requirement it pays (v2: ``accepted``
equal to one; v1: same network and amount) and verifies it locally (EVM EIP-3009,
Solana transaction), before any network call. The result names the payer's CAIP-10
account, the USD it pays and the replay identity the store must claim.

What the facilitator is sent: the payload as it came, and our requirement; for a v1
payment the requirement in v1's shape (``maxAmountRequired``, ``resource``, the v1
network name).

Pure: values and ``now`` in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aroutd.errors import BadRequest
from aroutd.headers import Headers, values_of
from aroutd.x402 import reasons
from aroutd.x402.evm import verify_evm
from aroutd.x402.networks import NETWORKS, USDC_DECIMALS
from aroutd.x402.payload import (
    PaymentPayload,
    decode_payment_signature,
    decode_x_payment,
    select_requirement,
)
from aroutd.x402.reasons import Refused, Verified
from aroutd.x402.solana import verify_solana

__all__ = ["CheckedPayment", "check_payment", "read_payment", "v1_requirement"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedPayment:
    """A payment that holds locally, and what to do with it."""

    payment: PaymentPayload
    requirement: Mapping[str, Any] = field(repr=False)  # what the facilitator is sent
    verified: Verified
    account: str  # the payer's CAIP-10 account
    usd: float


def read_payment(headers: Headers) -> PaymentPayload | None:
    """The request's payment, decoded; None when it carries none."""
    v2 = values_of(headers, b"payment-signature")
    v1 = values_of(headers, b"x-payment")
    if not v2 and not v1:
        return None
    if len(v2) + len(v1) > 1:
        raise BadRequest("invalid payment header: give one PAYMENT-SIGNATURE")
    return decode_payment_signature(v2[0]) if v2 else decode_x_payment(v1[0])


def v1_requirement(requirement: Mapping[str, Any], resource: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 requirement as x402 v1 wrote it (for a v1 payment's facilitator calls)."""
    net = NETWORKS[requirement["network"]]
    return {
        "scheme": requirement["scheme"],
        "network": net.v1_name,
        "maxAmountRequired": requirement["amount"],
        "resource": resource.get("url", ""),
        "description": resource.get("description", ""),
        "mimeType": resource.get("mimeType", ""),
        "payTo": requirement["payTo"],
        "maxTimeoutSeconds": requirement["maxTimeoutSeconds"],
        "asset": requirement["asset"],
        "extra": requirement.get("extra", {}),
    }


def check_payment(
    payment: PaymentPayload,
    advertised: Sequence[Mapping[str, Any]],
    resource: Mapping[str, Any],
    now: int,
) -> CheckedPayment | Refused:
    """The payment verified against the requirement it pays, or why it is refused."""
    requirement = select_requirement(payment, advertised)
    if requirement is None:
        return Refused(reason=reasons.NO_MATCHING_REQUIREMENTS, message="accepted is none of ours")
    if str(requirement["network"]).startswith("solana:"):
        verdict = verify_solana(payment, requirement)
    else:
        verdict = verify_evm(payment, requirement, now)
    if isinstance(verdict, Refused):
        return verdict
    sent = requirement if payment.x402_version == 2 else v1_requirement(requirement, resource)
    usd = float(Decimal(verdict.amount) / (Decimal(10) ** USDC_DECIMALS))
    return CheckedPayment(
        payment=payment,
        requirement=sent,
        verified=verdict,
        account=f"{verdict.network}:{verdict.payer}",
        usd=usd,
    )
