"""aroutd.usage.ledger (wallet balances, the transactions log) and the store's part of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aroutd.errors import BadRequest, PaymentRequired
from aroutd.store.base import Transaction
from aroutd.store.sqlite import SqliteStore
from aroutd.usage.book import CREDITS_PERIOD, UsageBook, wallet_subject
from aroutd.usage.ledger import (
    MSG_CREDITS,
    balance_object,
    canonical_account,
    check_balance,
    debit_line,
    operator_credit,
    transaction_object,
)
from aroutd.usage.parse import Usage

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
EVM = "eip155:8453:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example
SOL = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"


def _credit(tx_id: str, usd: float, account: str = EVM, at: datetime = NOW) -> Transaction:
    return Transaction(
        id=tx_id, account=account, type="credit", amount=usd, description="x", created_at=at
    )


@pytest.mark.parametrize(
    ("balance", "refused"),
    [
        pytest.param(0.0, True, id="zero"),
        pytest.param(-0.001, True, id="below"),
        pytest.param(1e-9, False, id="a-little"),
        pytest.param(42.5, False, id="plenty"),
    ],
)
def test_check_balance(balance: float, refused: bool) -> None:
    if not refused:
        check_balance(balance)
        return
    with pytest.raises(PaymentRequired) as info:
        check_balance(balance)
    assert (info.value.status, info.value.type, info.value.message) == (
        402,
        "payment_required",
        MSG_CREDITS,
    )


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param(EVM, EVM, id="eip55"),
        pytest.param(EVM.lower(), EVM, id="lowercase-evm"),
        pytest.param(f"  {EVM}\n", EVM, id="spaces"),
        pytest.param(SOL, SOL, id="solana"),
        pytest.param("eip155:8453:0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed", None, id="bad-55"),
        pytest.param("eip155:8453:0x1234", None, id="short"),
        pytest.param("eip155::0x" + "11" * 20, None, id="no-chain"),
        pytest.param("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:0OIl", None, id="not-base58"),
        pytest.param("bitcoin:000000000019d6689c085ae165831e93:x", None, id="other-namespace"),
        pytest.param("", None, id="empty"),
    ],
)
def test_canonical_account(text: str, want: str | None) -> None:
    if want is not None:
        assert canonical_account(text) == want
        return
    with pytest.raises(BadRequest, match=r"^account: "):
        canonical_account(text)


@given(st.text(max_size=300))
def test_canonical_account_takes_any_text(text: str) -> None:
    try:
        out = canonical_account(text)
    except BadRequest as exc:
        message = exc.message
        out = None
    if out is None:
        assert message.startswith("account: ")
    else:
        assert canonical_account(out) == out


@pytest.mark.parametrize(
    ("usd", "ok"),
    [
        pytest.param("1", True, id="one"),
        pytest.param("0.000001", True, id="a-micro-dollar"),
        pytest.param("1000000", True, id="the-most"),
        pytest.param("1000000.01", False, id="too-much"),
        pytest.param("0", False, id="zero"),
        pytest.param("-5", False, id="negative"),
        pytest.param("nan", False, id="nan"),
        pytest.param("inf", False, id="inf"),
        pytest.param("5 USD", False, id="not-a-number"),
    ],
)
def test_operator_credit_amounts(usd: str, ok: bool) -> None:
    if ok:
        tx = operator_credit(tx_id="txn_1", account=EVM, usd_text=usd, note="", now=NOW)
        assert (tx.type, tx.amount, tx.description) == ("credit", float(usd), "Operator credit")
        return
    with pytest.raises(BadRequest, match=r"^amount: "):
        operator_credit(tx_id="txn_1", account=EVM, usd_text=usd, note="", now=NOW)


def test_debit_line_and_views() -> None:
    usage = Usage(input_tokens=500, output_tokens=200)
    tx = debit_line(
        tx_id="txn_d",
        account=EVM,
        request_id="rid-1",
        model="openai/gpt-4o",
        usage=usage,
        usd=0.0042,
        now=NOW,
    )
    assert transaction_object(tx) == {
        "id": "txn_d",
        "type": "usage",
        "amount": -0.0042,
        "description": "openai/gpt-4o - 500 input tokens, 200 output tokens",
        "created_at": "2026-12-02T12:00:00Z",
        "request_id": "rid-1",
        "transaction": None,
        "network": None,
    }
    assert balance_object(42.5) == {"balance": 42.5, "currency": "USD"}
    assert balance_object(None) == {"balance": None, "currency": "USD"}
    assert balance_object(0.1 + 0.2) == {"balance": 0.3, "currency": "USD"}


def test_book_balance_is_credits_less_spend_and_debits_ride_the_commit(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    try:
        book = UsageBook()
        book.apply([store.credit(_credit("txn_c", 1.0))])
        assert book.balance(EVM) == 1.0
        debit = debit_line(
            tx_id="txn_d", account=EVM, request_id="r", model="m", usage=Usage(), usd=0.25, now=NOW
        )
        book.add([wallet_subject(EVM)], NOW, usd=0.25, debit=debit)
        assert book.balance(EVM) == 0.75 and book.has_pending()
        rows = book.take()
        assert book.debits_in_flight() == [debit]
        book.restore()  # the commit failed: the debit is pending again, not lost
        assert book.balance(EVM) == 0.75
        rows = book.take()
        book.committed(store.add_usage(rows, book.debits_in_flight()))
        assert book.balance(EVM) == 0.75 and not book.has_pending()
        assert [t.id for t in store.transactions(EVM, 0, 10)] == ["txn_d", "txn_c"]
        # a debit written twice (a retried commit) is logged once; the usage adds anyway
        store.add_usage([], [debit])
        assert len(store.transactions(EVM, 0, 10)) == 2
    finally:
        store.close()


def test_a_credit_is_counted_once_and_seen_by_other_instances(tmp_path: Path) -> None:
    a, b = SqliteStore.open(tmp_path / "s.db"), SqliteStore.open(tmp_path / "s.db")
    try:
        first = a.credit(_credit("txn_pay", 5.0))
        again = b.credit(_credit("txn_pay", 5.0))  # the same payment credited twice
        assert (first.subject, first.period, first.usd) == (
            wallet_subject(EVM),
            CREDITS_PERIOD,
            5.0,
        )
        assert again.usd == 5.0 and again.seq == first.seq
        b.credit(_credit("txn_other", 2.5))
        book = UsageBook()
        book.apply(a.usage_changes(0))
        assert book.balance(EVM) == 7.5
        assert book.balance(SOL) == 0.0
    finally:
        a.close()
        b.close()


def test_transactions_newest_first_paged_and_per_account(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    try:
        for i in range(5):
            store.credit(_credit(f"txn_{i}", 1.0 + i, at=NOW + timedelta(seconds=i)))
        store.credit(_credit("txn_sol", 1.0, account=SOL))
        assert [t.id for t in store.transactions(EVM, 0, 10)] == [
            f"txn_{i}" for i in range(4, -1, -1)
        ]
        assert [t.id for t in store.transactions(EVM, 1, 2)] == ["txn_3", "txn_2"]
        assert [t.id for t in store.transactions(SOL, 0, 10)] == ["txn_sol"]
        assert store.transactions("eip155:1:0x" + "00" * 20, 0, 10) == []
    finally:
        store.close()
    again = SqliteStore.open(tmp_path / "s.db")  # durable: it is all there after reopening
    try:
        assert len(again.transactions(EVM, 0, 10)) == 5
        assert again.transactions(EVM, 0, 1)[0].created_at == NOW + timedelta(seconds=4)
    finally:
        again.close()
