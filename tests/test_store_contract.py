"""The state-store contract (aroutd.store.base), held against every backend alike.

Each test runs on the sqlite store (a file in tmp) and on the Redis store (one real
redis-server per module, FLUSHALL before each test). ``opener`` opens another instance
on the same state: two of them stand for two processes (or hosts) sharing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aroutd.errors import Forbidden, ServiceUnavailable
from aroutd.keytable.table import KeyEntry
from aroutd.store.base import KeyChange, Payment, StateStore, Transaction, UsageRow
from aroutd.store.redis import RedisStore
from aroutd.store.sqlite import SqliteStore
from aroutd.usage.book import CREDITS_PERIOD, UsageBook, wallet_subject
from aroutd.usage.ledger import debit_line
from aroutd.usage.parse import Usage

from .redisserver import RedisServer, redis_server, requires_redis
from .test_store_keys import digest, entry  # the keys of these tests, one maker for both

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
EVM = "eip155:8453:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SOL = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
PAYER = "eip155:84532:0x857b06519E91e3A54538791bDbb0E22373e36b66"

Opener = Callable[[], StateStore]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=requires_redis)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[StateStore] = []
    if request.param == "sqlite":
        path = tmp_path / "state" / "aroutd.db"

        def make() -> StateStore:
            return SqliteStore.open(path)
    else:
        srv: RedisServer = request.getfixturevalue("server")
        with srv.client() as c:
            c.flushall()

        def make() -> StateStore:
            return RedisStore.open(srv.url)

    def tracked() -> StateStore:
        s = make()
        opened.append(s)
        return s

    yield tracked
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Opener) -> StateStore:
    return opener()


def race(n: int, work: Callable[[int], object]) -> list[object]:
    """``work(i)`` in ``n`` threads released together; the results, in thread order."""
    results: list[object] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


# -- nonces and wallets (SPEC §8) -----------------------------------------------------------


def test_a_nonce_is_single_use(store: StateStore) -> None:
    assert store.use_nonce("a1b2c3d4e5f6", LATER, NOW) is True
    assert store.use_nonce("a1b2c3d4e5f6", LATER, NOW + timedelta(seconds=1)) is False
    assert store.use_nonce("A1B2C3D4E5F6", LATER, NOW) is True  # case matters


def test_a_nonce_is_refused_by_another_instance_and_after_reopening(opener: Opener) -> None:
    a = opener()
    assert a.use_nonce("persist1234", LATER, NOW) is True
    assert opener().use_nonce("persist1234", LATER, NOW) is False
    a.close()
    assert opener().use_nonce("persist1234", LATER, NOW) is False


def test_an_expired_nonce_counts_as_unused(store: StateStore) -> None:
    assert store.use_nonce("oldnonce1", NOW + timedelta(seconds=10), NOW) is True
    # still live at NOW + 1 s, even when asked with an expiry already past
    assert store.use_nonce("oldnonce1", NOW, NOW + timedelta(seconds=1)) is False
    # after its message can no longer verify, the nonce is taken over
    assert store.use_nonce("oldnonce1", LATER + timedelta(minutes=5), LATER) is True
    assert store.use_nonce("oldnonce1", LATER + timedelta(minutes=5), LATER) is False


def test_one_nonce_raced_from_two_instances_wins_once(opener: Opener) -> None:
    stores = [opener(), opener()]
    results = race(8, lambda i: stores[i % 2].use_nonce("racenonce1", LATER, NOW))
    assert sorted(results, key=bool) == [False] * 7 + [True]


def test_ensure_wallet_creates_once_with_a_stable_id(opener: Opener) -> None:
    a, b = opener(), opener()
    wallet = a.ensure_wallet(EVM, NOW)
    assert (wallet.account, wallet.created_at) == (EVM, NOW)
    assert wallet.id.startswith("wa_") and len(wallet.id) == 19
    assert a.ensure_wallet(EVM, LATER) == wallet
    assert b.ensure_wallet(EVM, LATER) == wallet  # another instance agrees
    assert a.ensure_wallet(SOL, NOW).id != wallet.id
    a.close()
    assert opener().ensure_wallet(EVM, LATER) == wallet


def test_a_wallet_raced_from_two_instances_is_one(opener: Opener) -> None:
    stores = [opener(), opener()]
    wallets = race(8, lambda i: stores[i % 2].ensure_wallet(EVM, NOW + timedelta(seconds=i)))
    assert len(set(wallets)) == 1


# -- keys (SPEC §7) -------------------------------------------------------------------------


def test_a_key_round_trips_with_every_field(store: StateStore) -> None:
    full = entry(
        1,
        allowed_providers=("openai",),
        allowed_models=("openai/gpt-4o*", "gpt-4o"),
        limit=12.5,
        limit_reset="weekly",
        rpm_limit=60,
        rpd_limit=1000,
        tpm_limit=10**12,
        expires_at=NOW + timedelta(days=30, microseconds=250),
        disabled=True,
    )
    made = store.create_key(full)
    assert made == KeyChange(1, full.digest, full)
    assert list(store.key_changes(0)) == [made]
    assert list(store.key_changes(1)) == []


def test_writes_take_the_next_number_and_deletes_leave_tombstones(store: StateStore) -> None:
    store.create_key(entry(1))
    store.create_key(entry(2))
    renamed = store.update_key(digest(1), "acme", lambda e: replace(e, name="renamed"))
    assert renamed == KeyChange(3, digest(1), replace(entry(1), name="renamed"))
    assert store.delete_key(digest(2), "acme") == KeyChange(4, digest(2), None)
    assert [(c.seq, c.digest, c.entry is None) for c in store.key_changes(2)] == [
        (3, digest(1), False),
        (4, digest(2), True),
    ]
    # a deleted key is gone for every verb
    assert store.update_key(digest(2), "acme", lambda e: e) is None
    assert store.delete_key(digest(2), None) is None
    assert store.update_key(digest(9), None, lambda e: e) is None  # never known
    assert store.delete_key(digest(9), None) is None
    assert [c.seq for c in store.key_changes(0)] == [3, 4]


def test_another_tenants_key_is_unknown(store: StateStore) -> None:
    store.create_key(entry(1, tenant="beta"))
    assert store.update_key(digest(1), "acme", lambda e: replace(e, disabled=True)) is None
    assert store.delete_key(digest(1), "acme") is None
    assert store.key_changes(0) == [KeyChange(1, digest(1), entry(1, tenant="beta"))]
    assert store.update_key(digest(1), None, lambda e: e) is not None  # the operator's CLI
    assert store.delete_key(digest(1), "beta") == KeyChange(3, digest(1), None)


def test_a_refused_change_writes_nothing(store: StateStore) -> None:
    store.create_key(entry(1))

    def refuse(current: KeyEntry) -> KeyEntry:
        raise Forbidden("requested permissions exceed tenant scope")

    with pytest.raises(Forbidden):
        store.update_key(digest(1), "acme", refuse)
    assert [c.seq for c in store.key_changes(0)] == [1]
    store.create_key(entry(2))  # and the store is not left inside a transaction
    assert [c.seq for c in store.key_changes(0)] == [1, 2]


def test_a_digest_already_stored_is_refused_and_kept(store: StateStore) -> None:
    store.create_key(entry(1))
    with pytest.raises(ServiceUnavailable):
        store.create_key(replace(entry(1), name="impostor"))
    assert store.key_changes(0) == [KeyChange(1, digest(1), entry(1))]


def test_two_instances_share_one_sequence(opener: Opener) -> None:
    a, b = opener(), opener()
    a.create_key(entry(1))
    b.create_key(entry(2))
    a.update_key(digest(2), "acme", lambda e: replace(e, disabled=True))
    seen = [(c.seq, c.digest) for c in b.key_changes(0)]
    assert seen == [(1, digest(1)), (3, digest(2))]  # the latest state of each, in order
    assert [c.seq for c in b.key_changes(1)] == [3]
    assert b.key_changes(0)[1].entry == replace(entry(2), disabled=True)


def test_racing_updates_from_two_instances_lose_nothing(opener: Opener) -> None:
    stores = [opener(), opener()]
    stores[0].create_key(entry(1))

    def append(i: int) -> object:
        for _ in range(10):
            stores[i % 2].update_key(digest(1), "acme", lambda e: replace(e, name=e.name + str(i)))
        return None

    race(8, append)
    (final,) = stores[1].key_changes(0)
    assert final.seq == 1 + 80 and final.entry is not None
    appended = final.entry.name.removeprefix("key 1")
    assert sorted(appended) == sorted("".join(str(i) * 10 for i in range(8)))


# -- usage (SPEC §9) ------------------------------------------------------------------------


def usage(subject: str, period: str = "lifetime", **fields: float) -> UsageRow:
    return UsageRow(subject=subject, period=period, **fields)  # type: ignore[arg-type]


def test_usage_adds_up_with_a_change_number_per_row(store: StateStore) -> None:
    first = store.add_usage(
        [
            usage("key:ab", usd=0.25, input_tokens=10, output_tokens=5, requests=1),
            usage("tenant:acme", "daily:2026-12-02", usd=0.5, cached_input_tokens=3),
        ]
    )
    assert [(r.subject, r.period, r.seq, r.usd) for r in first] == [
        ("key:ab", "lifetime", 1, 0.25),
        ("tenant:acme", "daily:2026-12-02", 2, 0.5),
    ]
    again = store.add_usage(
        [
            usage("key:ab", usd=0.5, input_tokens=1, requests=1),
            usage("key:ab", usd=0.25, output_tokens=2, requests=1),  # the same row twice
        ]
    )
    total = usage("key:ab", usd=1.0, input_tokens=11, output_tokens=7, requests=3, seq=4)
    assert again == [
        usage("key:ab", usd=0.75, input_tokens=11, output_tokens=5, requests=2, seq=3),
        total,
    ]
    assert store.usage_changes(0) == [first[1], total]
    assert store.usage_changes(2) == [total]
    assert store.usage_changes(4) == []
    assert store.add_usage([]) == []


def test_usage_from_racing_instances_adds_up(opener: Opener) -> None:
    stores = [opener(), opener()]

    def add(i: int) -> object:
        for _ in range(10):
            stores[i % 2].add_usage([usage("tenant:acme", usd=0.5, requests=1, input_tokens=7)])
        return None

    race(8, add)
    (row,) = stores[0].usage_changes(0)
    assert (row.seq, row.usd, row.requests, row.input_tokens) == (80, 40.0, 80, 560)


def test_a_debit_rides_the_usage_and_is_logged_once(opener: Opener) -> None:
    store = opener()
    book = UsageBook()
    book.apply([store.credit(_credit("txn_c", 1.0))])
    assert book.balance(EVM) == 1.0
    debit = debit_line(
        tx_id="txn_d", account=EVM, request_id="r", model="m", usage=Usage(), usd=0.25, now=NOW
    )
    book.add([wallet_subject(EVM)], NOW, usd=0.25, debit=debit)
    rows = book.take()
    book.committed(store.add_usage(rows, book.debits_in_flight()))
    assert book.balance(EVM) == 0.75 and not book.has_pending()
    assert [t.id for t in store.transactions(EVM, 0, 10)] == ["txn_d", "txn_c"]
    assert store.transactions(EVM, 0, 1) == [debit]
    # a debit written twice (a retried commit) is logged once; the usage adds anyway
    store.add_usage([usage(wallet_subject(EVM), usd=0.25)], [debit])
    assert len(opener().transactions(EVM, 0, 10)) == 2
    other = UsageBook()
    other.apply(opener().usage_changes(0))
    assert other.balance(EVM) == 0.5


# -- credits and the transactions log (SPEC §9) ------------------------------------------


def _credit(tx_id: str, usd: float, account: str = EVM, at: datetime = NOW) -> Transaction:
    return Transaction(
        id=tx_id, account=account, type="credit", amount=usd, description="x", created_at=at
    )


def test_a_credit_is_counted_once_and_seen_by_other_instances(opener: Opener) -> None:
    a, b = opener(), opener()
    first = a.credit(_credit("txn_pay", 5.0))
    assert first == UsageRow(subject=wallet_subject(EVM), period=CREDITS_PERIOD, usd=5.0, seq=1)
    assert b.credit(_credit("txn_pay", 5.0)) == first  # the same payment credited twice
    b.credit(_credit("txn_other", 2.5))
    book = UsageBook()
    book.apply(a.usage_changes(0))
    assert book.balance(EVM) == 7.5
    assert book.balance(SOL) == 0.0
    assert [t.id for t in a.transactions(EVM, 0, 10)] == ["txn_other", "txn_pay"]


def test_a_credit_raced_from_two_instances_counts_once(opener: Opener) -> None:
    stores = [opener(), opener()]
    rows = race(8, lambda i: stores[i % 2].credit(_credit("txn_once", 2.0)))
    assert {r.usd for r in rows if isinstance(r, UsageRow)} == {2.0}
    assert len(stores[0].transactions(EVM, 0, 10)) == 1


def test_transactions_newest_first_paged_and_per_account(opener: Opener) -> None:
    store = opener()
    for i in range(5):
        store.credit(_credit(f"txn_{i}", 1.0 + i, at=NOW + timedelta(seconds=i)))
    store.credit(_credit("txn_sol", 1.0, account=SOL))
    assert [t.id for t in store.transactions(EVM, 0, 10)] == [f"txn_{i}" for i in range(4, -1, -1)]
    assert [t.id for t in store.transactions(EVM, 1, 2)] == ["txn_3", "txn_2"]
    assert [t.id for t in store.transactions(EVM, 4, 10)] == ["txn_0"]
    assert store.transactions(EVM, 5, 10) == []
    assert [t.id for t in store.transactions(SOL, 0, 10)] == ["txn_sol"]
    assert store.transactions("eip155:1:0x" + "00" * 20, 0, 10) == []
    store.close()
    again = opener()  # durable: it is all there after reopening
    assert len(again.transactions(EVM, 0, 10)) == 5
    assert again.transactions(EVM, 0, 1)[0] == _credit("txn_4", 5.0, at=NOW + timedelta(seconds=4))


def test_transactions_at_the_same_moment_newest_insert_first(store: StateStore) -> None:
    for tx_id in ("txn_b", "txn_a", "txn_c"):  # not in id order
        store.credit(_credit(tx_id, 1.0))
    assert [t.id for t in store.transactions(EVM, 0, 10)] == ["txn_c", "txn_a", "txn_b"]


def test_a_transaction_keeps_every_field(store: StateStore) -> None:
    tx = Transaction(
        id="txn_full",
        account=PAYER,
        type="credit",
        amount=0.1,
        description="x402 payment — 1 USDC",
        created_at=NOW + timedelta(microseconds=5),
        request_id="rid-9",
        transaction="0xfeed",
        network="eip155:84532",
    )
    store.credit(tx)
    assert store.transactions(PAYER, 0, 10) == [tx]


# -- x402 payments (SPEC §10) -----------------------------------------------------------------


def _payment(pid: str = "evm:84532:0xabc:0x01", request_id: str | None = None) -> Payment:
    return Payment(
        id=pid,
        account=PAYER,
        network="eip155:84532",
        usd=1.0,
        created_at=NOW,
        request_id=request_id,
    )


def _pay_credit(pid: str) -> Transaction:
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


def test_a_payment_is_claimed_once_even_by_racing_instances(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    results = race(16, lambda i: stores[i % 4].claim_payment(_payment()))
    assert sorted(results, key=bool) == [False] * 15 + [True]
    assert not stores[0].claim_payment(_payment())  # and after, still a replay


def test_release_frees_only_a_pending_claim(store: StateStore) -> None:
    assert store.claim_payment(_payment())
    store.release_payment(_payment().id)
    assert store.claim_payment(_payment())
    store.mark_payment(_payment().id, "failed")
    store.release_payment(_payment().id)  # only a pending claim is released
    assert not store.claim_payment(_payment())
    store.release_payment("evm:never:seen")  # nothing to release: nothing happens
    store.mark_payment("evm:never:seen", "settled", "0x00")  # nor to mark
    assert store.settled_payments() == []


def test_settled_then_credited_once_even_across_a_restart(opener: Opener) -> None:
    store = opener()
    pid = _payment().id
    assert store.claim_payment(_payment(request_id="rid-1"))
    assert store.credit_payment(pid, _pay_credit(pid)) is None  # not settled: nothing credited
    store.mark_payment(pid, "settled", "0xfeed")
    store.mark_payment(pid, "settled")  # no transaction given: the one held stays
    store.close()  # "crash" between settle and credit
    again = opener()
    assert again.settled_payments() == [
        replace(_payment(request_id="rid-1"), state="settled", transaction="0xfeed")
    ]
    row = again.credit_payment(pid, _pay_credit(pid))
    assert row == UsageRow(subject=wallet_subject(PAYER), period=CREDITS_PERIOD, usd=1.0, seq=1)
    assert again.credit_payment(pid, _pay_credit(pid)) is None  # never twice
    assert again.settled_payments() == []
    book = UsageBook()
    book.apply(opener().usage_changes(0))
    assert book.balance(PAYER) == 1.0
    assert again.transactions(PAYER, 0, 10) == [_pay_credit(pid)]
    assert not again.claim_payment(_payment())  # a credited payment is still a replay


def test_settled_payments_lists_only_the_settled_in_id_order(store: StateStore) -> None:
    for pid in ("svm:c", "svm:a", "svm:b", "svm:d"):
        assert store.claim_payment(_payment(pid))
        store.mark_payment(pid, "settled", f"tx-{pid}")
    store.mark_payment("svm:d", "unknown")  # the facilitator said nothing: not to credit
    assert store.claim_payment(_payment("svm:e"))  # pending
    assert [(p.id, p.transaction) for p in store.settled_payments()] == [
        ("svm:a", "tx-svm:a"),
        ("svm:b", "tx-svm:b"),
        ("svm:c", "tx-svm:c"),
    ]


def test_a_payment_credited_from_racing_instances_counts_once(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    pid = _payment().id
    stores[0].claim_payment(_payment())
    stores[0].mark_payment(pid, "settled", "0xfeed")
    rows = race(8, lambda i: stores[i % 4].credit_payment(pid, _pay_credit(pid)))
    assert [r for r in rows if r is not None] == [
        UsageRow(subject=wallet_subject(PAYER), period=CREDITS_PERIOD, usd=1.0, seq=1)
    ]
