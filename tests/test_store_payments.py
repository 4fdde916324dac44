"""x402 payments in the sqlite store: claimed once across processes, settled, credited once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from aroutd.store.base import Payment, Transaction
from aroutd.store.sqlite import SqliteStore
from aroutd.usage.book import UsageBook

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
PAYER = "eip155:84532:0x857b06519E91e3A54538791bDbb0E22373e36b66"


def _payment(pid: str = "evm:84532:0xabc:0x01") -> Payment:
    return Payment(id=pid, account=PAYER, network="eip155:84532", usd=1.0, created_at=NOW)


def _credit(pid: str) -> Transaction:
    return Transaction(
        id=f"txn_{pid}",
        account=PAYER,
        type="credit",
        amount=1.0,
        description="x402 payment",
        created_at=NOW,
        transaction="0xfeed",
        network="eip155:84532",
    )


def test_a_payment_is_claimed_once_even_by_racing_processes(tmp_path: Path) -> None:
    stores = [SqliteStore.open(tmp_path / "s.db") for _ in range(4)]
    try:
        results: list[bool] = []
        start = threading.Barrier(len(stores) * 4)

        def claim(store: SqliteStore) -> None:
            start.wait()
            results.append(store.claim_payment(_payment()))

        threads = [threading.Thread(target=claim, args=(s,)) for s in stores for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 15 + [True]
        assert not stores[0].claim_payment(_payment())  # and after, still a replay
    finally:
        for s in stores:
            s.close()


def test_release_lets_a_payment_that_never_reached_the_chain_be_tried_again(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    try:
        assert store.claim_payment(_payment())
        store.release_payment(_payment().id)
        assert store.claim_payment(_payment())
        store.mark_payment(_payment().id, "failed")
        store.release_payment(_payment().id)  # only a pending claim is released
        assert not store.claim_payment(_payment())
    finally:
        store.close()


def test_settled_then_credited_once_and_a_crash_in_between_is_credited_at_restart(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    pid = _payment().id
    assert store.claim_payment(_payment())
    assert store.credit_payment(pid, _credit(pid)) is None  # not settled: nothing credited
    store.mark_payment(pid, "settled", "0xfeed")
    store.close()  # "crash" between settle and credit
    again = SqliteStore.open(tmp_path / "s.db")
    try:
        pending = again.settled_payments()
        assert [(p.id, p.state, p.transaction, p.account) for p in pending] == [
            (pid, "settled", "0xfeed", PAYER)
        ]
        row = again.credit_payment(pid, _credit(pid))
        assert row is not None and row.usd == 1.0
        assert again.credit_payment(pid, _credit(pid)) is None  # never twice
        assert again.settled_payments() == []
        book = UsageBook()
        book.apply(again.usage_changes(0))
        assert book.balance(PAYER) == 1.0
        (line,) = again.transactions(PAYER, 0, 10)
        assert (line.type, line.transaction, line.network) == ("credit", "0xfeed", "eip155:84532")
    finally:
        again.close()
