"""x402 payments on the request path (SPEC §10), with ``[x402] enabled``.

- :meth:`Payments.challenge`: the 402 of an inference request with no credential, or
  of a wallet whose balance is used up: ``PAYMENT-REQUIRED`` (what we accept, and the
  ``sign-in-with-x`` extension with a fresh nonce).
- :meth:`Payments.check`: a ``PAYMENT-SIGNATURE`` (or v1 ``X-PAYMENT``) decoded (400)
  and verified locally against what we advertise (402 with the reason code), before
  any network call.
- :func:`pay`, once the request is known to be allowed (scope, spending limits): the
  payment is claimed in the state store (a replay, from this or any instance, is 402
  before the facilitator is called); then the facilitator verifies and settles it; the
  settled transaction is recorded, then credited to the wallet (one transaction with
  its log line). Only then is the request served; its answer carries
  ``PAYMENT-RESPONSE`` with a wallet JWT for the credited account.
- Failures: an unreachable facilitator is 502 with nothing credited (a claim that
  never reached the chain is released, so the client may try again); a facilitator
  that says no is 402 (verification: ``PAYMENT-REQUIRED.error``; settlement:
  ``PAYMENT-RESPONSE`` ``success: false``); a settle whose answer never came is 502
  and the payment is left ``unknown`` for the operator (logged: the chain may have
  moved the money).
- A crash between settlement and credit loses nothing: :func:`recover_payments`
  credits every settled payment at start.

The payment sequence runs shielded from cancellation (a client that leaves does not
stop a settlement halfway), bounded by the facilitator client's own timeouts.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from aroutd.accesslog import AccessRecord
from aroutd.config.parse import Config
from aroutd.errors import PaymentRequired
from aroutd.headers import Headers
from aroutd.policy import principal_for_wallet
from aroutd.principal import Principal
from aroutd.shell import logsink
from aroutd.shell.facilitator import Facilitator, FacilitatorDown, FeePayers
from aroutd.shell.runtime import Runtime
from aroutd.store.base import Payment, Transaction
from aroutd.usage.ledger import MSG_CREDITS, check_balance
from aroutd.x402 import reasons
from aroutd.x402.check import CheckedPayment, check_payment, read_payment
from aroutd.x402.payload import PaymentPayload
from aroutd.x402.requirements import (
    accepts,
    encode_header,
    payment_failure,
    payment_required,
    payment_response,
)
from aroutd.x402.siwx_extension import siwx_extension

__all__ = [
    "MSG_PAYMENT",
    "Payments",
    "check_wallet_balance",
    "pay",
    "payer_principal",
    "recover_payments",
    "request_payment",
]

MSG_PAYMENT = "payment required"
DESCRIPTION = "Prepaid credits for LLM API requests"
_NO_STORE = ("Cache-Control", "no-store")
_REPLAYED = {"eip155": "invalid_exact_evm_nonce_already_used", "solana": "duplicate_settlement"}

Header = tuple[str, str]


@dataclass(slots=True)
class Payments:
    config: Config
    facilitator: Facilitator
    fee_payers: FeePayers = field(default_factory=FeePayers)

    def resource(self, path: str) -> dict[str, Any]:
        url = self.config.server.public_url.rstrip("/") + path
        return {"url": url, "description": DESCRIPTION, "mimeType": "application/json"}

    def advertised(self) -> list[dict[str, Any]]:
        return accepts(self.config.x402, self.fee_payers.by_network)

    def challenge(self, path: str, *, error: str | None) -> PaymentRequired:
        """The 402 with ``PAYMENT-REQUIRED`` (``error``: a reason code, or None)."""
        return PaymentRequired(MSG_PAYMENT, headers=self.challenge_headers(path, error))

    def challenge_headers(self, path: str, error: str | None) -> list[Header]:
        """``PAYMENT-REQUIRED``: what we accept for ``path``, and how to sign in."""
        cfg = self.config
        siwx = siwx_extension(
            public_url=cfg.server.public_url,
            networks=cfg.wallet.networks,
            nonce=secrets.token_hex(16),
            now=datetime.now(UTC),
        )
        resource = self.resource(path)
        obj = payment_required(
            cfg.x402,
            resource_url=resource["url"],
            description=DESCRIPTION,
            mime_type="application/json",
            error=error or reasons.PAYMENT_REQUIRED,
            solana_fee_payers=self.fee_payers.by_network,
            siwx=siwx,
        )
        return [("PAYMENT-REQUIRED", encode_header(obj)), _NO_STORE]

    def check(self, payment: PaymentPayload, path: str, now: datetime) -> CheckedPayment:
        """The payment verified locally; else the 402 naming why."""
        checked = check_payment(
            payment, self.advertised(), self.resource(path), int(now.timestamp())
        )
        if isinstance(checked, reasons.Refused):
            raise self.challenge(path, error=checked.reason)
        return checked


def request_payment(payments: Payments, headers: Headers, path: str) -> CheckedPayment | None:
    """The request's x402 payment, verified locally (400, 402); None without one."""
    payment = read_payment(headers)
    return None if payment is None else payments.check(payment, path, datetime.now(UTC))


def payer_principal(
    rt: Runtime, checked: CheckedPayment | None, rec: AccessRecord, path: str
) -> Principal:
    """A request with no credential: its payment's wallet, or the 402 challenge."""
    payments = rt.payments
    assert payments is not None
    if checked is None:
        raise payments.challenge(path, error=None)
    principal = principal_for_wallet(checked.account, rt.config.wallet, "x402")
    rec.auth_method, rec.wallet, rec.tenant = "x402", principal.wallet, principal.tenant
    return principal


def check_wallet_balance(rt: Runtime, account: str, path: str) -> None:
    """402 ``insufficient credits`` for a wallet at or below zero; with x402, with the
    challenge to pay (SPEC §9, §10)."""
    if rt.usage.balance(account) > 0:
        return
    if rt.payments is not None:
        raise PaymentRequired(MSG_CREDITS, headers=rt.payments.challenge_headers(path, None))
    check_balance(0.0)


async def pay(
    rt: Runtime, checked: CheckedPayment, account: str, path: str, rid: str
) -> list[Header]:
    """Settle ``checked`` and credit ``account``; the headers of the served answer."""
    payments = rt.payments
    assert payments is not None
    with trio.CancelScope(shield=True):
        try:
            tx_hash = await _settle(rt, payments, checked, account, path, rid)
        except FacilitatorDown:
            rt.metrics.payments["facilitator_error"] += 1
            raise
        except PaymentRequired:
            rt.metrics.payments["refused"] += 1
            raise
        await _credit(rt, checked.verified.replay_key, account, checked, tx_hash, rid)
    now = datetime.now(UTC)
    store, tokens = rt.store, rt.tokens
    assert tokens is not None
    await trio.to_thread.run_sync(store.ensure_wallet, account, now)
    answer = payment_response(
        transaction=tx_hash,
        network=checked.verified.network,
        payer=checked.verified.payer,
        jwt=tokens.issue(account, now),
    )
    headers = [("PAYMENT-RESPONSE", encode_header(answer))]
    if checked.payment.x402_version == 1:
        headers.append(("X-PAYMENT-RESPONSE", headers[0][1]))
    return headers


async def _settle(
    rt: Runtime, payments: Payments, checked: CheckedPayment, account: str, path: str, rid: str
) -> str:
    """Claim, verify, settle: the settled transaction (recorded), or the error."""
    v, store = checked.verified, rt.store
    payment_id = v.replay_key
    record = Payment(
        id=payment_id,
        account=account,
        network=v.network,
        usd=checked.usd,
        request_id=rid,
        created_at=datetime.now(UTC),
    )
    if not await trio.to_thread.run_sync(store.claim_payment, record):
        rt.metrics.payments["replayed"] += 1
        raise payments.challenge(path, error=_REPLAYED[v.network.split(":", 1)[0]])
    raw: Mapping[str, Any] = checked.payment.raw
    try:
        verdict = await payments.facilitator.verify(raw, checked.requirement)
    except FacilitatorDown:
        await trio.to_thread.run_sync(store.release_payment, payment_id)
        raise
    if not verdict.valid:
        await trio.to_thread.run_sync(store.mark_payment, payment_id, "failed")
        raise payments.challenge(path, error=verdict.reason)
    try:
        settled = await payments.facilitator.settle(raw, checked.requirement)
    except FacilitatorDown:
        await trio.to_thread.run_sync(store.mark_payment, payment_id, "unknown")
        logsink.event("payment_unknown", id=payment_id, network=v.network, request_id=rid)
        raise
    if not settled.success:
        await trio.to_thread.run_sync(store.mark_payment, payment_id, "failed")
        failure = payment_failure(
            error_reason=settled.reason or "unexpected_settle_error",
            network=v.network,
            payer=v.payer,
        )
        raise PaymentRequired(
            MSG_PAYMENT, headers=[("PAYMENT-RESPONSE", encode_header(failure)), _NO_STORE]
        )
    await trio.to_thread.run_sync(store.mark_payment, payment_id, "settled", settled.transaction)
    return settled.transaction


def _credit_line(payment: Payment, tx_hash: str) -> Transaction:
    """The credit of a settled payment: its id follows from the payment's, so crediting
    it again (at a restart) adds nothing."""
    return Transaction(
        id="txn_" + hashlib.sha256(payment.id.encode()).hexdigest()[:24],
        account=payment.account,
        type="credit",
        amount=payment.usd,
        description=f"x402 payment ({payment.network})",
        created_at=datetime.now(UTC),
        request_id=payment.request_id,
        transaction=tx_hash,
        network=payment.network,
    )


async def _credit(
    rt: Runtime, payment_id: str, account: str, checked: CheckedPayment, tx: str, rid: str
) -> None:
    payment = Payment(
        id=payment_id,
        account=account,
        network=checked.verified.network,
        usd=checked.usd,
        request_id=rid,
        created_at=datetime.now(UTC),
    )
    row = await trio.to_thread.run_sync(
        rt.store.credit_payment, payment_id, _credit_line(payment, tx)
    )
    if row is not None:
        rt.usage.apply([row])
    rt.metrics.payments["credited"] += 1
    rt.metrics.payments_usd += checked.usd
    logsink.event(
        "payment", id=payment_id, account=account, usd=checked.usd, transaction=tx, request_id=rid
    )


async def recover_payments(rt: Runtime) -> None:
    """At start: credit every payment that was settled but not credited (a crash)."""
    store = rt.store
    for payment in await trio.to_thread.run_sync(store.settled_payments):
        line = _credit_line(payment, payment.transaction or "")
        row = await trio.to_thread.run_sync(store.credit_payment, payment.id, line)
        if row is not None:
            rt.usage.apply([row])
            logsink.event(
                "payment_recovered", id=payment.id, account=payment.account, usd=payment.usd
            )
