"""aroutd.store.redis beyond the shared contract (tests/test_store_contract.py): the
password and its redaction, startup and serving errors, reconnecting, kill -9 of the
server, the key layout (one hash tag), expiry of ended periods, WAIT for replicas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.keytable.table import KeyEntry
from aroutd.store import redis as redis_store
from aroutd.store.base import Payment, StateStore, Transaction, UsageRow
from aroutd.store.redis import PREFIX, RedisStore, redact_url

from .redisserver import RedisServer, redis_server, requires_redis

pytestmark = requires_redis

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ACCOUNT = "eip155:8453:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SECRET = "s3cret-Pa55word"
DAY_S = 86400


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture
def store(server: RedisServer) -> Iterator[RedisStore]:
    with server.client() as c:
        c.flushall()
    s = RedisStore.open(server.url)
    yield s
    s.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, to kill and restart."""
    with redis_server(tmp_path / "own") as s:
        yield s


def entry(n: int) -> KeyEntry:
    return KeyEntry(
        id=f"api-{n}",
        tenant="acme",
        type="api",
        digest=hashlib.sha256(f"key{n}".encode()).digest(),
        name=f"key {n}",
        source="store",
        created_at=NOW,
        updated_at=NOW,
    )


def credit(tx_id: str, usd: float = 1.0) -> Transaction:
    return Transaction(
        id=tx_id, account=ACCOUNT, type="credit", amount=usd, description="x", created_at=NOW
    )


def payment(pid: str = "evm:8453:0xabc:0x01") -> Payment:
    return Payment(id=pid, account=ACCOUNT, network="eip155:8453", usd=1.0, created_at=NOW)


def test_is_a_state_store(store: RedisStore) -> None:
    checked: StateStore = store  # mypy checks the protocol; this checks the import
    assert checked is store


# -- the password ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", id="none"),
        pytest.param("redis://:pw@h:1/0", "redis://:***@h:1/0", id="password-only"),
        pytest.param("rediss://app:p%40ss:x@h/2", "rediss://app:***@h/2", id="user-and-password"),
        pytest.param("redis://app@h/0", "redis://app@h/0", id="user-only"),
        pytest.param("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1", id="query"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_right_password_opens_and_never_shows(tmp_path: Path) -> None:
    with redis_server(tmp_path, password=SECRET) as srv:
        in_url = RedisStore.open(srv.url)
        as_arg = RedisStore.open(srv.plain_url, password=SECRET)
        try:
            assert in_url.use_nonce("pwnonce1", LATER, NOW) is True
            assert as_arg.use_nonce("pwnonce1", LATER, NOW) is False
            assert repr(in_url) == f"RedisStore('redis://:***@127.0.0.1:{srv.port}/0')"
            assert SECRET not in repr(in_url) + str(in_url) + repr(as_arg) + str(as_arg)
        finally:
            in_url.close()
            as_arg.close()


@pytest.mark.parametrize("how", ["wrong-in-url", "wrong-as-arg", "missing"])
def test_a_wrong_or_missing_password_is_a_config_error(tmp_path: Path, how: str) -> None:
    with redis_server(tmp_path, password=SECRET) as srv:
        url = {
            "wrong-in-url": f"redis://:{SECRET}x@127.0.0.1:{srv.port}/0",
            "wrong-as-arg": srv.plain_url,
            "missing": srv.plain_url,
        }[how]
        password = SECRET + "x" if how == "wrong-as-arg" else None
        with pytest.raises(ConfigError) as info:
            RedisStore.open(url, password=password)
        (problem,) = info.value.problems
        shown = redact_url(url)
        assert problem.startswith(f"{shown}: cannot reach the state store (")
        assert "Error" in problem.partition("(")[2]  # the redis-py error's type, no more
        assert SECRET not in problem and info.value.__cause__ is None
        assert info.value.__suppress_context__


def test_nothing_listening_is_a_config_error(own_server: RedisServer) -> None:
    own_server.kill()
    with pytest.raises(ConfigError) as info:
        RedisStore.open(f"redis://:{SECRET}@127.0.0.1:{own_server.port}/0")
    assert info.value.problems == (
        f"redis://:***@127.0.0.1:{own_server.port}/0:"
        " cannot reach the state store (ConnectionError)",
    )


def test_a_url_that_is_not_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^http://h/: cannot reach the state store \(ValueError"):
        RedisStore.open("http://h/")


def test_rediss_is_tls(tmp_path: Path) -> None:
    with redis_server(tmp_path, password=SECRET, tls=True) as srv:
        store = RedisStore.open(srv.url)
        try:
            assert store.use_nonce("tlsnonce1", LATER, NOW) is True
            assert store.use_nonce("tlsnonce1", LATER, NOW) is False
        finally:
            store.close()
        with pytest.raises(ConfigError, match="cannot reach the state store"):
            RedisStore.open(srv.plain_url, password=SECRET)  # no TLS: the server hangs up


# -- faults while serving -------------------------------------------------------------------


def test_a_server_down_is_503_and_the_store_reconnects(own_server: RedisServer) -> None:
    store = RedisStore.open(own_server.url)
    try:
        assert store.use_nonce("before1", LATER, NOW) is True
        own_server.kill()
        for call in (
            lambda: store.use_nonce("during1", LATER, NOW),
            lambda: store.key_changes(0),
            lambda: store.transactions(ACCOUNT, 0, 10),
            lambda: store.settled_payments(),
            lambda: store.update_key(entry(1).digest, None, lambda e: e),
        ):
            with pytest.raises(ServiceUnavailable) as info:
                call()
            assert (info.value.status, info.value.message) == (503, "state store unavailable")
            assert isinstance(info.value.__cause__, redis.RedisError)
        own_server.start()
        assert store.use_nonce("before1", LATER, NOW) is False  # the AOF kept it
        assert store.use_nonce("after1", LATER, NOW) is True
    finally:
        store.close()


def test_a_server_error_is_503(store: RedisStore, server: RedisServer) -> None:
    with server.client() as c:
        c.set(PREFIX + "key:seq", "not a number")
    with pytest.raises(ServiceUnavailable) as info:
        store.create_key(entry(1))
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert store.key_changes(0) == []  # the script stopped before writing


def test_acknowledged_writes_survive_kill_9_of_the_server(own_server: RedisServer) -> None:
    store = RedisStore.open(own_server.url)
    try:
        assert store.use_nonce("killed9nonce", LATER, NOW)
        wallet = store.ensure_wallet(ACCOUNT, NOW)
        made = [store.create_key(entry(n)) for n in range(20)]
        store.add_usage([UsageRow(subject="key:ab", period="lifetime", usd=0.5, requests=1)])
        store.credit(credit("txn_1", 2.0))
        assert store.claim_payment(payment())
        own_server.kill()  # SIGKILL right after the last answer: appendfsync always
        own_server.start()
        again = RedisStore.open(own_server.url)
        try:
            assert again.use_nonce("killed9nonce", LATER, NOW) is False
            assert again.ensure_wallet(ACCOUNT, LATER) == wallet
            assert again.key_changes(0) == made
            rows = {(r.subject, r.period): r.usd for r in again.usage_changes(0)}
            assert rows == {("key:ab", "lifetime"): 0.5, (f"wallet:{ACCOUNT}", "credits"): 2.0}
            assert [t.id for t in again.transactions(ACCOUNT, 0, 10)] == ["txn_1"]
            assert again.claim_payment(payment()) is False
        finally:
            again.close()
    finally:
        store.close()


# -- the layout -----------------------------------------------------------------------------


def test_every_name_carries_the_hash_tag(store: RedisStore, server: RedisServer) -> None:
    store.use_nonce("tagnonce", LATER, NOW)
    store.ensure_wallet(ACCOUNT, NOW)
    store.create_key(entry(1))
    store.delete_key(entry(1).digest, None)
    store.add_usage(
        [UsageRow(subject="key:ab", period="daily:2026-12-02", usd=0.5)],
        [replace(credit("txn_d", -0.5), type="usage")],
    )
    store.credit(credit("txn_c"))
    store.claim_payment(payment())
    store.mark_payment(payment().id, "settled", "0xfeed")
    with server.client() as c:
        names = set(c.scan_iter(count=1000))
    hexdigest = entry(1).digest.hex()
    assert names == {
        PREFIX + name
        for name in (
            "nonce:tagnonce",
            f"wallet:{ACCOUNT}",
            "key:seq",
            "key:feed",
            f"key:row:{hexdigest}",
            "usage:seq",
            "usage:feed",
            "usage:row:daily:2026-12-02/key:ab",
            f"usage:row:credits/wallet:{ACCOUNT}",
            "tx:lines",
            "tx:n",
            f"tx:log:{ACCOUNT}",
            f"pay:row:{payment().id}",
            "pay:settled",
        )
    }
    assert {key_slot(n.encode()) for n in names} == {key_slot(b"{aroutd}")}


def test_ended_periods_expire_and_leave_the_feed(store: RedisStore, server: RedisServer) -> None:
    periods = ["lifetime", "daily:2026-12-02", "weekly:2026-11-30", "monthly:2026-12"]
    store.add_usage([UsageRow(subject="key:ab", period=p, requests=1) for p in periods])
    store.credit(credit("txn_c"))
    row = PREFIX + "usage:row:"
    with server.client() as c:
        ttls = {p: c.ttl(f"{row}{p}/key:ab") for p in periods}
        assert ttls == {
            "lifetime": -1,
            "daily:2026-12-02": 35 * DAY_S,
            "weekly:2026-11-30": 100 * DAY_S,
            "monthly:2026-12": 400 * DAY_S,
        }
        assert c.ttl(f"{row}credits/wallet:{ACCOUNT}") == -1
        c.delete(f"{row}daily:2026-12-02/key:ab")  # as its expiry would
    assert [r.period for r in store.usage_changes(0)] == [*periods[:1], *periods[2:], "credits"]
    with server.client() as c:
        assert c.zscore(PREFIX + "usage:feed", "daily:2026-12-02/key:ab") is None


def test_a_nonce_is_forgotten_by_the_server_when_it_expires(
    store: RedisStore, server: RedisServer
) -> None:
    assert store.use_nonce("ttlnonce1", LATER, NOW)
    with server.client() as c:
        assert 299_000 < c.pttl(PREFIX + "nonce:ttlnonce1") <= 300_000
    assert store.use_nonce("ttlnonce2", NOW, NOW)  # already past: kept for 1 ms at most


def test_feeds_are_read_in_pages(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_store, "_PAGE_ROWS", 2)
    made = [store.create_key(entry(n)) for n in range(5)]
    store.add_usage([UsageRow(subject=f"key:{n}", period="lifetime") for n in range(5)])
    assert store.key_changes(0) == made
    assert store.key_changes(3) == made[3:]
    assert [r.seq for r in store.usage_changes(1)] == [2, 3, 4, 5]


def test_a_lost_race_calls_change_again_on_the_newer_key(
    store: RedisStore, server: RedisServer
) -> None:
    other = RedisStore.open(server.url)
    store.create_key(entry(1))
    seen: list[str] = []

    def change(e: KeyEntry) -> KeyEntry:
        seen.append(e.name)
        if len(seen) == 1:  # another instance writes between this read and the write
            other.update_key(e.digest, None, lambda o: replace(o, name=o.name + " other"))
        return replace(e, name=e.name + " mine")

    try:
        result = store.update_key(entry(1).digest, "acme", change)
    finally:
        other.close()
    assert seen == ["key 1", "key 1 other"]
    assert result is not None and result.seq == 3
    assert result.entry == replace(entry(1), name="key 1 other mine")


# -- WAIT for replicas ----------------------------------------------------------------------


def test_wait_replicas_without_a_replica_is_503(store: RedisStore, server: RedisServer) -> None:
    waiting = RedisStore.open(server.url, wait_replicas=1)
    try:
        with pytest.raises(ServiceUnavailable):
            waiting.use_nonce("waitnonce", LATER, NOW)
        assert waiting.key_changes(0) == []  # reads do not wait
    finally:
        waiting.close()


def test_wait_replicas_with_a_replica_acknowledges(tmp_path: Path) -> None:
    with redis_server(tmp_path / "primary") as primary:
        replica = RedisServer(tmp_path / "replica", replica_of=primary.port)
        replica.folder.mkdir()
        replica.start()
        try:
            primary.wait_for_replicas(1)
            store = RedisStore.open(primary.url, wait_replicas=1)
            try:
                assert store.use_nonce("replicated1", LATER, NOW) is True
                assert store.claim_payment(payment())
            finally:
                store.close()
            with replica.client() as c:
                assert c.exists(PREFIX + "nonce:replicated1", PREFIX + "pay:row:" + payment().id)
        finally:
            replica.kill()
