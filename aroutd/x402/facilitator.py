"""What is said to an x402 facilitator and what its answers mean (x402 v2 §7; the
reference's section 4). Pure: JSON in, values out; the shell's client
(:mod:`aroutd.shell.facilitator`) does the I/O.

- ``POST /verify`` and ``POST /settle`` take ``{x402Version, paymentPayload,
  paymentRequirements}``: the payload as the client sent it, and *our* requirement
  that its ``accepted`` matched (never the client's copy).
- A 200 answer is the result, positive or negative; anything else, or a body that is
  not the documented JSON, is a facilitator failure (502 for the client, nothing
  credited), never a guess.
- ``GET /supported`` lists ``kinds``; a Solana kind's ``extra.feePayer`` is the fee
  payer to advertise for that network. A network without one is left out of the
  challenge (SPEC §10), so a missing or odd entry is skipped, not an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FacilitatorError",
    "SettleAnswer",
    "VerifyAnswer",
    "fee_payers",
    "parse_settle",
    "parse_verify",
    "request_body",
]

MAX_ANSWER_BYTES = 65536
_MAX_CODE_CHARS = 200


class FacilitatorError(Exception):
    """The facilitator did not give a usable answer (its text is never shown)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyAnswer:
    valid: bool
    reason: str | None = None  # invalidReason, a machine code
    payer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleAnswer:
    success: bool
    transaction: str = ""  # EVM tx hash, Solana signature; "" on failure
    network: str = ""
    payer: str | None = None
    reason: str | None = None  # errorReason


def request_body(payload: Mapping[str, Any], requirement: Mapping[str, Any]) -> bytes:
    """The body of ``/verify`` and ``/settle``."""
    version = payload.get("x402Version", 2)
    body = {"x402Version": version, "paymentPayload": payload, "paymentRequirements": requirement}
    return json.dumps(body, separators=(",", ":")).encode()


def _object(status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        raise FacilitatorError(f"status {status}")
    if len(body) > MAX_ANSWER_BYTES:
        raise FacilitatorError("answer too large")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise FacilitatorError("answer is not JSON") from None
    if not isinstance(value, dict):
        raise FacilitatorError("answer is not a JSON object")
    return value


def _code(value: object) -> str | None:
    """A machine code from the answer, bounded and printable, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:_MAX_CODE_CHARS]
    return text if text.isprintable() else None


def parse_verify(status: int, body: bytes) -> VerifyAnswer:
    answer = _object(status, body)
    valid = answer.get("isValid")
    if not isinstance(valid, bool):
        raise FacilitatorError("verify answer has no isValid")
    reason = _code(answer.get("invalidReason"))
    return VerifyAnswer(
        valid=valid,
        reason=None if valid else reason or "unexpected_verify_error",
        payer=_code(answer.get("payer")),
    )


def parse_settle(status: int, body: bytes) -> SettleAnswer:
    answer = _object(status, body)
    success = answer.get("success")
    if not isinstance(success, bool):
        raise FacilitatorError("settle answer has no success")
    transaction = _code(answer.get("transaction")) or ""
    if success and not transaction:
        raise FacilitatorError("a successful settlement names no transaction")
    return SettleAnswer(
        success=success,
        transaction=transaction,
        network=_code(answer.get("network")) or "",
        payer=_code(answer.get("payer")),
        reason=None if success else _code(answer.get("errorReason")) or "unexpected_settle_error",
    )


def fee_payers(status: int, body: bytes) -> dict[str, str]:
    """Network -> feePayer of every Solana ``exact`` kind of a ``/supported`` answer."""
    answer = _object(status, body)
    kinds = answer.get("kinds")
    out: dict[str, str] = {}
    if not isinstance(kinds, list):
        return out
    for kind in kinds:
        if not isinstance(kind, dict) or kind.get("scheme") != "exact":
            continue
        network, extra = kind.get("network"), kind.get("extra")
        if not isinstance(network, str) or not network.startswith("solana:"):
            continue
        payer = extra.get("feePayer") if isinstance(extra, dict) else None
        if isinstance(payer, str) and 32 <= len(payer) <= 44 and payer.isalnum():
            out.setdefault(network, payer)
    return out
