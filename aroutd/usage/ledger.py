"""Wallet balances and their transactions log (SPEC §7 ``/api/v1/balance``, §9).

A wallet principal spends a prepaid USD balance: what it paid in (x402 credits, an
operator's ``aroutd wallets credit``) less what its requests cost. At or below zero a
request is refused before forwarding with 402 ``insufficient credits`` (a soft cap, as
for spending limits: requests in flight finish and are charged, so a balance can end a
little below zero). Each charged request is a debit line of the log, with its request
id, in ARouter's transaction shape.

An API key has no balance of its own: ``/api/v1/balance`` answers its
``limit_remaining`` (null when it has no limit) and its log is empty.

Pure: values in, values out; transaction ids and times come from the caller.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from aroutd.auth import evm, solana
from aroutd.errors import BadRequest, PaymentRequired
from aroutd.store.base import Transaction
from aroutd.usage.parse import Usage

__all__ = [
    "MAX_CREDIT_USD",
    "MSG_CREDITS",
    "balance_object",
    "canonical_account",
    "check_balance",
    "debit_line",
    "operator_credit",
    "transaction_object",
]

MSG_CREDITS = "insufficient credits"
MAX_CREDIT_USD = 1_000_000.0  # one operator grant; a typo of a few digits is refused


_CAIP10_RE = re.compile(r"(eip155:[0-9]{1,32}|solana:[1-9A-HJ-NP-Za-km-z]{1,32}):(\S+)", re.ASCII)


def canonical_account(text: str) -> str:
    """A wallet's CAIP-10 account as its JWT names it: EVM addresses EIP-55 checksummed,
    Solana addresses in their one base58 spelling."""
    match = _CAIP10_RE.fullmatch(text.strip())
    if match is None:
        raise BadRequest("account: must be CAIP-10 (eip155:CHAIN:0x… or solana:REF:ADDRESS)")
    chain, address = match.groups()
    try:
        if chain.startswith("eip155:"):
            return f"{chain}:{evm.parse_checksummed(address)[1]}"
        solana.parse_address(address)
    except BadRequest:
        raise BadRequest("account: malformed address") from None
    return f"{chain}:{address}"


def check_balance(balance: float, headers: tuple[tuple[str, str], ...] = ()) -> None:
    """402 ``insufficient credits`` (type ``payment_required``) at or below zero."""
    if balance <= 0:
        raise PaymentRequired(MSG_CREDITS, headers=headers)


def debit_line(
    *,
    tx_id: str,
    account: str,
    request_id: str,
    model: str,
    usage: Usage,
    usd: float,
    now: datetime,
) -> Transaction:
    """The log line of one request's cost, described as ARouter does
    (``openai/gpt-4o - 500 input tokens, 200 output tokens``)."""
    description = (
        f"{model[:200] or 'unknown model'} - {usage.input_tokens} input tokens,"
        f" {usage.output_tokens} output tokens"
    )
    return Transaction(
        id=tx_id,
        account=account,
        type="usage",
        amount=-round(usd, 10),
        description=description,
        request_id=request_id,
        created_at=now,
    )


def operator_credit(
    *, tx_id: str, account: str, usd_text: str, note: str, now: datetime
) -> Transaction:
    """An operator's grant: a positive, finite USD amount up to ``MAX_CREDIT_USD``."""
    try:
        usd = float(usd_text)
    except ValueError:
        raise BadRequest("amount: must be a number of USD") from None
    if not math.isfinite(usd) or not 0 < usd <= MAX_CREDIT_USD:
        raise BadRequest(f"amount: must be more than 0 and at most {MAX_CREDIT_USD:g} USD")
    return Transaction(
        id=tx_id,
        account=account,
        type="credit",
        amount=usd,
        description=note[:200] or "Operator credit",
        created_at=now,
    )


def transaction_object(tx: Transaction) -> dict[str, Any]:
    """ARouter's transaction (``id, type, amount, description, created_at``), with the
    request id and, for a payment, its on-chain transaction and network."""
    return {
        "id": tx.id,
        "type": tx.type,
        "amount": tx.amount,
        "description": tx.description,
        "created_at": tx.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request_id": tx.request_id,
        "transaction": tx.transaction,
        "network": tx.network,
    }


def balance_object(balance: float | None) -> dict[str, Any]:
    """``GET /api/v1/balance`` (SPEC §7): ``{"balance": 42.5, "currency": "USD"}``."""
    return {"balance": None if balance is None else round(balance, 10), "currency": "USD"}
