"""Reason codes for a refused payment, and the two verdicts (SPEC §10).

A failed local verification is answered 402 with ``PAYMENT-REQUIRED`` whose ``error``
is the reason code (SPEC §10), so the codes are the ones x402 clients already know:
the spec list (x402-siwx.md §1.7, S1 §9) and the codes the Python SDK 2.25 emits for
exact EVM and SVM. None is made up here; where the reference has no code for a
check, the closest listed one is used and :attr:`Refused.message` says which check
failed (for logs and tests; it never quotes the client's text).

- :class:`Verified`: the payment holds locally; carries the payer, the amount and the
  replay identity the caller must check against payments seen before.
- :class:`Refused`: the reason code and a short public message.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EVM_MISSING_EIP712_DOMAIN",
    "EVM_RECIPIENT_MISMATCH",
    "EVM_SIGNATURE",
    "EVM_VALID_AFTER",
    "EVM_VALID_BEFORE",
    "EVM_VALUE_MISMATCH",
    "INVALID_NETWORK",
    "INVALID_PAYLOAD",
    "INVALID_PAYMENT_REQUIREMENTS",
    "NETWORK_MISMATCH",
    "NO_MATCHING_REQUIREMENTS",
    "PAYMENT_REQUIRED",
    "SVM_AMOUNT_MISMATCH",
    "SVM_COMPUTE_LIMIT",
    "SVM_COMPUTE_PRICE",
    "SVM_COMPUTE_PRICE_TOO_HIGH",
    "SVM_FEE_PAYER_MISSING",
    "SVM_FEE_PAYER_NOT_MANAGED",
    "SVM_FEE_PAYER_TRANSFERRING",
    "SVM_INSTRUCTIONS_LENGTH",
    "SVM_INVALID_PAYLOAD",
    "SVM_MEMO_COUNT",
    "SVM_MEMO_MISMATCH",
    "SVM_MINT_MISMATCH",
    "SVM_NO_TRANSFER_INSTRUCTION",
    "SVM_RECIPIENT_MISMATCH",
    "SVM_TRANSACTION_DECODE_FAILED",
    "SVM_UNKNOWN_INSTRUCTION",
    "UNSUPPORTED_SCHEME",
    "Refused",
    "Verified",
]

# The PaymentRequired ``error`` texts of the Python resource server (x402-siwx.md §1.3).
PAYMENT_REQUIRED = "Payment required"
NO_MATCHING_REQUIREMENTS = "No matching payment requirements"

# Spec list, S1 §9 (x402-siwx.md §1.7).
INVALID_NETWORK = "invalid_network"
INVALID_PAYLOAD = "invalid_payload"
INVALID_PAYMENT_REQUIREMENTS = "invalid_payment_requirements"
EVM_VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
EVM_VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
EVM_VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
EVM_SIGNATURE = "invalid_exact_evm_payload_signature"
EVM_RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"

# Python 2.25 facilitator codes, EVM and SVM alike (x402-siwx.md §1.7, §2.4).
UNSUPPORTED_SCHEME = "unsupported_scheme"
NETWORK_MISMATCH = "network_mismatch"
EVM_MISSING_EIP712_DOMAIN = "missing_eip712_domain"

# Python 2.25 SVM codes (x402-siwx.md §1.7, §3.3).
SVM_INVALID_PAYLOAD = "invalid_exact_svm_payload"
SVM_TRANSACTION_DECODE_FAILED = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
SVM_INSTRUCTIONS_LENGTH = "invalid_exact_svm_payload_transaction_instructions_length"
SVM_UNKNOWN_INSTRUCTION = (
    "invalid_exact_svm_payload_unknown_fourth_instruction",
    "invalid_exact_svm_payload_unknown_fifth_instruction",
    "invalid_exact_svm_payload_unknown_sixth_instruction",
)
SVM_COMPUTE_LIMIT = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
SVM_COMPUTE_PRICE = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
SVM_COMPUTE_PRICE_TOO_HIGH = SVM_COMPUTE_PRICE + "_too_high"
SVM_NO_TRANSFER_INSTRUCTION = "invalid_exact_svm_payload_no_transfer_instruction"
SVM_MINT_MISMATCH = "invalid_exact_svm_payload_mint_mismatch"
SVM_RECIPIENT_MISMATCH = "invalid_exact_svm_payload_recipient_mismatch"
# Exact equality (spec and TS); Python's ">=" check says ..._amount_insufficient instead.
SVM_AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch"
SVM_FEE_PAYER_MISSING = "invalid_exact_svm_payload_missing_fee_payer"
SVM_FEE_PAYER_NOT_MANAGED = "fee_payer_not_managed_by_facilitator"
SVM_FEE_PAYER_TRANSFERRING = "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
SVM_MEMO_MISMATCH = "invalid_exact_svm_payload_memo_mismatch"
SVM_MEMO_COUNT = "invalid_exact_svm_payload_memo_count"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """A payment that holds locally; the facilitator still has to verify and settle it.

    ``replay_key`` names the payment for the seen-payments check (SPEC §10): EVM
    ``"<network>/<from, lowercase>/<nonce, 0x hex>"`` (EIP-3009 nonces are single use
    per authorizer); Solana ``"<network>/<sha256 of the message, hex>"`` (the message
    is what the payer signed; the fee payer's signature, added later, is not in it).
    """

    network: str  # CAIP-2
    payer: str  # EVM: EIP-55 ``from``; Solana: base58 transfer authority
    amount: str  # atomic units, decimal
    replay_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A payment refused locally: ``reason`` is the code for ``PAYMENT-REQUIRED.error``."""

    reason: str
    message: str
