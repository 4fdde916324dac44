"""``aroutd wallets credit|show`` (README): wallet balances, for an operator at the host.

``credit`` adds USD to a wallet's balance (a grant, a refund, a payment taken outside
x402): one credit line of its transactions log and its ``credits`` row, in one store
transaction, on disk before the command says so, and logged (``wallet_credit``). A
running daemon on the same state file sees it within a second (the usage poll of
:mod:`aroutd.shell.usagesync`). ``show`` prints the balance and the latest lines.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from aroutd.shell import logsink
from aroutd.shell.files import load_config
from aroutd.shell.stores import open_store
from aroutd.usage.book import UsageBook
from aroutd.usage.ledger import canonical_account, operator_credit, transaction_object

__all__ = ["credit_wallet", "show_wallet"]

SHOWN_LINES = 20


def credit_wallet(config_path: Path, account_text: str, usd_text: str, note: str) -> list[str]:
    """Credit the wallet; what to print (its new balance)."""
    cfg = load_config(config_path)
    account = canonical_account(account_text)
    tx = operator_credit(
        tx_id=f"txn_{secrets.token_hex(12)}",
        account=account,
        usd_text=usd_text,
        note=note,
        now=datetime.now(UTC),
    )
    store = open_store(cfg)
    try:
        store.credit(tx)
        book = UsageBook()
        book.apply(store.usage_changes(0))
    finally:
        store.close()
    logsink.event("wallet_credit", by="cli", account=account, usd=tx.amount, id=tx.id)
    return [f"credited {tx.amount:g} USD to {account}: balance {book.balance(account):.6f} USD"]


def show_wallet(config_path: Path, account_text: str) -> list[str]:
    """The wallet's balance and its latest transactions, one tab-separated line each."""
    cfg = load_config(config_path)
    account = canonical_account(account_text)
    store = open_store(cfg)
    try:
        book = UsageBook()
        book.apply(store.usage_changes(0))
        lines = store.transactions(account, 0, SHOWN_LINES)
    finally:
        store.close()
    out = [
        f"{account}\tbalance {book.balance(account):.6f} USD",
        "CREATED\tTYPE\tAMOUNT\tID\tDESCRIPTION",
    ]
    for tx in lines:
        o = transaction_object(tx)
        out.append(
            f"{o['created_at']}\t{o['type']}\t{o['amount']:.6f}\t{o['id']}\t{o['description']}"
        )
    return out
