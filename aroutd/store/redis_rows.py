"""The rows of the Redis state store (:mod:`aroutd.store.redis`) as it writes them.

A key's fields and a transaction line are compact JSON; a payment is a hash of strings;
usage totals come back from the scripts as ``{seq, usd, input, output, cached,
requests}``. Times are unix seconds as floats, as in the sqlite store, so both round a
moment alike (to the microsecond). Pure: values in, values out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aroutd.keytable.table import KeyEntry
from aroutd.store.base import KeyChange, Payment, Transaction, UsageRow

__all__ = ["change", "entry_json", "payment", "row", "transaction", "tx_json"]


def row(subject: str, period: str, totals: Sequence[Any]) -> UsageRow:
    seq, usd, input_tokens, output_tokens, cached, requests = totals
    return UsageRow(
        subject=subject,
        period=period,
        seq=int(seq),
        usd=float(usd),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cached_input_tokens=int(cached),
        requests=int(requests),
    )


def tx_json(tx: Transaction) -> str:
    line = {
        "id": tx.id,
        "account": tx.account,
        "type": tx.type,
        "amount": tx.amount,
        "description": tx.description,
        "request_id": tx.request_id,
        "transaction": tx.transaction,
        "network": tx.network,
        "created_at": tx.created_at.timestamp(),
    }
    return json.dumps(line, separators=(",", ":"))


def transaction(line: dict[str, Any]) -> Transaction:
    return Transaction(**{**line, "created_at": datetime.fromtimestamp(line["created_at"], UTC)})


def payment(payment_id: str, f: dict[str, str]) -> Payment:
    return Payment(
        id=payment_id,
        state=f["state"],  # type: ignore[arg-type]  # written by us: one of PaymentState
        account=f["account"],
        network=f["network"],
        usd=float(f["usd"]),
        transaction=f.get("tx_hash"),
        request_id=f.get("request_id"),
        created_at=datetime.fromtimestamp(float(f["created_at"]), UTC),
    )


def entry_json(e: KeyEntry) -> str:
    """A stored key's fields (as the sqlite store's columns), as JSON."""
    if e.created_at is None or e.updated_at is None:
        raise ValueError("a stored key has created_at and updated_at")
    fields = {
        "id": e.id,
        "tenant": e.tenant,
        "type": e.type,
        "name": e.name,
        "allowed_providers": list(e.allowed_providers),
        "allowed_models": list(e.allowed_models),
        "limit": e.limit,
        "limit_reset": e.limit_reset,
        "rpm_limit": e.rpm_limit,
        "rpd_limit": e.rpd_limit,
        "tpm_limit": e.tpm_limit,
        "expires_at": None if e.expires_at is None else e.expires_at.timestamp(),
        "disabled": e.disabled,
        "created_at": e.created_at.timestamp(),
        "updated_at": e.updated_at.timestamp(),
        "created_by": e.created_by,
    }
    return json.dumps(fields, separators=(",", ":"))


def change(hexdigest: str, seq: int, data: str | None) -> KeyChange:
    digest = bytes.fromhex(hexdigest)
    if data is None:
        return KeyChange(seq, digest, None)
    f = json.loads(data)
    expires, limit = f["expires_at"], f["limit"]
    entry = KeyEntry(
        id=f["id"],
        tenant=f["tenant"],
        type=f["type"],
        digest=digest,
        name=f["name"],
        allowed_providers=tuple(f["allowed_providers"]),
        allowed_models=tuple(f["allowed_models"]),
        limit=None if limit is None else float(limit),
        limit_reset=f["limit_reset"],
        rpm_limit=f["rpm_limit"],
        rpd_limit=f["rpd_limit"],
        tpm_limit=f["tpm_limit"],
        expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
        disabled=bool(f["disabled"]),
        source="store",
        created_at=datetime.fromtimestamp(f["created_at"], UTC),
        updated_at=datetime.fromtimestamp(f["updated_at"], UTC),
        created_by=f["created_by"],
    )
    return KeyChange(seq, digest, entry)
