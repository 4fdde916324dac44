"""aroutd.usage.book (usage in memory, pending and committed) and the store's usage rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aroutd.store.base import UsageRow
from aroutd.store.sqlite import SqliteStore
from aroutd.usage.book import Spent, UsageBook, key_subject, tenant_subject

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)  # a Wednesday
KEY, TENANT = key_subject("ab" * 32), tenant_subject("acme")


def test_added_usage_counts_in_every_period_at_once() -> None:
    book = UsageBook()
    book.add([KEY, TENANT], NOW, usd=0.5, input_tokens=10, output_tokens=7)
    book.add([KEY], NOW, usd=0.25)
    assert book.spent(KEY, NOW) == Spent(usage=0.75, daily=0.75, weekly=0.75, monthly=0.75)
    assert book.spent(TENANT, NOW).usage == 0.5
    tomorrow = NOW + timedelta(days=1)
    assert book.spent(KEY, tomorrow) == Spent(usage=0.75, daily=0.0, weekly=0.75, monthly=0.75)
    next_week = NOW + timedelta(days=5)  # Monday
    assert book.spent(KEY, next_week).weekly == 0.0
    assert book.spent(KEY, NOW).of(None) == 0.75 and book.spent(KEY, tomorrow).of("daily") == 0


def test_take_commit_and_restore_never_lose_or_double_a_delta(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    try:
        book = UsageBook()
        book.add([KEY], NOW, usd=1.0)
        batch = book.take()
        assert len(batch) == 4  # lifetime, day, week, month
        book.add([KEY], NOW, usd=2.0)  # while the commit is in flight
        assert book.spent(KEY, NOW).usage == 3.0
        book.restore()  # the commit failed
        assert book.spent(KEY, NOW).usage == 3.0
        rows = store.add_usage(book.take())
        book.committed(rows)
        assert book.spent(KEY, NOW).usage == 3.0 and not book.has_pending()
        book.add([KEY], NOW, usd=0.0)
        book.take()
        with pytest.raises(RuntimeError):  # one commit at a time
            book.take()
    finally:
        store.close()


def test_two_instances_add_up_through_the_store(tmp_path: Path) -> None:
    a_store, b_store = SqliteStore.open(tmp_path / "s.db"), SqliteStore.open(tmp_path / "s.db")
    try:
        a, b = UsageBook(), UsageBook()
        a.add([KEY], NOW, usd=1.0, input_tokens=3)
        b.add([KEY], NOW, usd=2.0, input_tokens=4)
        a.committed(a_store.add_usage(a.take()))
        b.committed(b_store.add_usage(b.take()))
        a.apply(a_store.usage_changes(a.cursor))
        assert a.spent(KEY, NOW).usage == 3.0 == b.spent(KEY, NOW).usage
        # an older row read late changes nothing
        stale = UsageRow(subject=KEY, period="lifetime", usd=1.0, seq=1)
        a.apply([stale])
        assert a.spent(KEY, NOW).usage == 3.0
        lifetime = [r for r in b_store.usage_changes(0) if r.period == "lifetime"]
        assert (lifetime[0].input_tokens, lifetime[0].requests) == (7, 2)
    finally:
        a_store.close()
        b_store.close()


def test_usage_survives_reopen(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    store.add_usage([UsageRow(subject=TENANT, period="lifetime", usd=4.5, requests=1)])
    store.close()
    again = SqliteStore.open(tmp_path / "s.db")
    try:
        book = UsageBook()
        book.apply(again.usage_changes(0))
        assert book.usd(TENANT, "lifetime") == 4.5
    finally:
        again.close()
