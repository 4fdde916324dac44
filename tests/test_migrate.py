"""``aroutd state migrate`` (SPEC §1, §14): a sqlite state, made with the real SqliteStore,
copied into a real redis-server (tests/redisserver.py), then read back through the
StateStore API of a RedisStore: every method answers as the sqlite store does, a second
run changes nothing, a run after more sqlite writes (or Redis writes) makes Redis follow
sqlite again. The command line as a subprocess: its lines, its event, its errors (exit
1, never the password).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.keytable.table import KeyEntry
from aroutd.shell.migrate import migrate_state
from aroutd.store.base import KeyChange, NonceRecord, Payment, StateStore, Transaction, UsageRow
from aroutd.store.redis import PREFIX, RedisStore
from aroutd.store.sqlite import SqliteStore
from aroutd.usage.book import CREDITS_PERIOD, wallet_subject

from .redisserver import RedisServer, redis_server, requires_redis
from .support import unused_port

pytestmark = requires_redis

PASSWORD = "hunter2-migrate"
NOW = datetime.now(UTC)  # the nonces' expiry is judged against the command's clock
T0 = datetime(2026, 12, 2, 12, tzinfo=UTC)
EVM = "eip155:8453:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SOL = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
ACCOUNTS = (EVM, SOL)
LIVE, EXPIRED = "nonce-live", "nonce-expired"
PAYMENTS = ("evm:8453:pending", "evm:8453:settled", "evm:8453:credited", "svm:failed", "svm:unk")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis"), PASSWORD) as s:
        yield s


@pytest.fixture
def url(server: RedisServer) -> str:
    with server.client() as c:
        c.flushall()
    return server.url


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "keys.toml").write_text("[tenants.acme]\n")
    cfg = tmp_path / "aroutd.toml"
    cfg.write_text('[keys]\nfile = "keys.toml"\n\n[state]\npath = "state/aroutd.db"\n')
    return cfg


@pytest.fixture
def sqlite(config: Path) -> Iterator[SqliteStore]:
    store = SqliteStore.open(config.parent / "state" / "aroutd.db")
    build_state(store)
    yield store
    store.close()


def redis_store(url: str) -> RedisStore:
    return RedisStore.open(url)


def digest(n: int) -> bytes:
    return hashlib.sha256(f"key{n}".encode()).digest()


def entry(n: int, **fields: object) -> KeyEntry:
    return KeyEntry(
        id=f"api-{n}",
        tenant="acme",
        type="api",
        digest=digest(n),
        name=f"key {n}",
        allowed_models=("openai/*",),
        limit=12.5,
        source="store",
        created_at=T0 + timedelta(seconds=n, microseconds=250),
        updated_at=T0 + timedelta(seconds=n),
        created_by="admin",
        **fields,  # type: ignore[arg-type]
    )


def usage(n: int, tokens: int, usd: float) -> list[UsageRow]:
    rows = [f"key:{digest(n).hex()}", "tenant:acme", wallet_subject(EVM)]
    periods = ("lifetime", "daily:2026-12-02", "monthly:2026-12")
    return [
        UsageRow(subject=s, period=p, usd=usd, input_tokens=tokens, requests=1)
        for s in rows
        for p in periods
    ]


def tx(tx_id: str, account: str, amount: float, at: datetime, **fields: object) -> Transaction:
    kind: Literal["credit", "usage"] = "credit" if amount > 0 else "usage"
    return Transaction(
        id=tx_id,
        account=account,
        type=kind,
        amount=amount,
        description=f"{kind} {tx_id}",
        created_at=at,
        **fields,  # type: ignore[arg-type]
    )


def payment(payment_id: str) -> Payment:
    return Payment(
        id=payment_id,
        account=EVM,
        network="eip155:8453",
        usd=0.05,
        request_id=f"req-{payment_id}",
        created_at=T0,
    )


def build_state(s: SqliteStore) -> None:
    """Keys created, updated, deleted; usage, credits, debits; payments in every state;
    wallets; a live nonce and an expired one."""
    for n in (1, 2, 3, 4):
        s.create_key(entry(n))
    s.update_key(digest(2), None, lambda e: replace(e, disabled=True, updated_at=T0))
    s.delete_key(digest(3), None)
    s.add_usage(usage(1, 100, 0.1), [tx("txn_d1", EVM, -0.1, T0, request_id="r1")])
    s.add_usage(usage(2, 7, 0.2), [tx("txn_d2", EVM, -0.2, T0, request_id="r2")])  # same time
    s.credit(tx("txn_c1", EVM, 10.0, T0 - timedelta(hours=1)))
    s.credit(tx("txn_c2", SOL, 5.0, T0))
    s.credit(tx("txn_c2", SOL, 5.0, T0))  # the same id again: once
    for account in ACCOUNTS:
        s.ensure_wallet(account, T0)
    for p in PAYMENTS:
        assert s.claim_payment(payment(p))
    s.mark_payment(PAYMENTS[1], "settled", "0xsettled")
    s.mark_payment(PAYMENTS[2], "settled", "0xcredited")
    s.credit_payment(PAYMENTS[2], tx("txn_p2", EVM, 0.05, T0, transaction="0xcredited"))
    s.mark_payment(PAYMENTS[3], "failed")
    s.mark_payment(PAYMENTS[4], "unknown")
    long_ago = NOW - timedelta(hours=2)  # one purge at this time, then none for 60 s
    assert s.use_nonce(LIVE, NOW + timedelta(hours=1), long_ago)
    assert s.use_nonce(EXPIRED, NOW - timedelta(hours=1), long_ago)


def keys_of(s: StateStore, only: set[bytes] | None = None) -> list[tuple[bytes, object]]:
    """The latest state of each key, in the feed's order (change numbers left out)."""
    return [(c.digest, c.entry) for c in s.key_changes(0) if only is None or c.digest in only]


def usage_of(s: StateStore, only: set[tuple[str, str]] | None = None) -> list[UsageRow]:
    rows = [replace(r, seq=0) for r in s.usage_changes(0)]
    return [r for r in rows if only is None or (r.subject, r.period) in only]


def assert_same(sqlite: SqliteStore, url: str) -> None:
    """Redis answers as sqlite for every item sqlite has (Redis may have more)."""
    redis = redis_store(url)
    try:
        digests = {c.digest for c in sqlite.key_changes(0)}
        assert keys_of(redis, digests) == keys_of(sqlite)
        rows = {(r.subject, r.period) for r in sqlite.usage_changes(0)}
        assert usage_of(redis, rows) == usage_of(sqlite)
        for account in ACCOUNTS:
            lines = sqlite.transactions(account, 0, -1)
            ids = {t.id for t in lines}
            assert [t for t in redis.transactions(account, 0, -1) if t.id in ids] == lines
            assert redis.ensure_wallet(account, NOW) == sqlite.ensure_wallet(account, NOW)
        assert redis.settled_payments() == sqlite.settled_payments()
    finally:
        redis.close()


def payment_states(server: RedisServer) -> dict[str, tuple[str, str | None]]:
    with server.client() as c:
        rows = {p: c.hgetall(f"{PREFIX}pay:row:{p}") for p in PAYMENTS}
    return {p: (f["state"], f.get("tx_hash")) for p, f in rows.items()}


def counters(server: RedisServer) -> dict[str, object]:
    """Every counter and index a write moves: equal before and after a run that writes
    nothing."""
    with server.client() as c:
        out: dict[str, object] = {n: c.get(PREFIX + n) for n in ("key:seq", "usage:seq", "tx:n")}
        out["lines"] = c.hgetall(f"{PREFIX}tx:lines")
        for feed in ("key:feed", "usage:feed"):
            out[feed] = c.zrange(PREFIX + feed, 0, -1, withscores=True)
        out["logs"] = {a: c.zrange(f"{PREFIX}tx:log:{a}", 0, -1) for a in ACCOUNTS}
        out["settled"] = c.smembers(f"{PREFIX}pay:settled")
    return out


def test_redis_answers_as_sqlite_after_the_migration(
    config: Path, sqlite: SqliteStore, url: str, server: RedisServer
) -> None:
    lines = migrate_state(config, url)
    assert lines[1:] == [
        "keys: 4 copied, 4 written, 0 unchanged",
        "usage: 14 copied, 14 written, 0 unchanged",
        "wallets: 2 copied, 2 written, 0 unchanged",
        "transactions: 5 copied, 5 written, 0 unchanged",
        "payments: 5 copied, 5 written, 0 unchanged",
        "nonces: 1 copied, 1 written, 0 unchanged",
    ]
    assert PASSWORD not in "\n".join(lines)
    assert_same(sqlite, url)
    assert [c.entry is None for c in sqlite.key_changes(0)] == [False, False, False, True]
    assert payment_states(server) == {
        PAYMENTS[0]: ("pending", None),
        PAYMENTS[1]: ("settled", "0xsettled"),
        PAYMENTS[2]: ("credited", "0xcredited"),
        PAYMENTS[3]: ("failed", None),
        PAYMENTS[4]: ("unknown", None),
    }
    redis = redis_store(url)
    try:
        for p in PAYMENTS:  # a replay of any migrated payment is refused
            assert not redis.claim_payment(payment(p))
        assert not redis.use_nonce(LIVE, NOW + timedelta(hours=1), NOW)
        assert redis.use_nonce(EXPIRED, NOW + timedelta(hours=1), NOW)
        assert redis.ensure_wallet(EVM, NOW).created_at == T0
        # the balance goes on from sqlite's: the settled payment credited on Redis
        credits = sqlite.usage_changes(0)
        before = next(
            r for r in credits if r.subject == wallet_subject(EVM) and r.period == CREDITS_PERIOD
        )
        row = redis.credit_payment(PAYMENTS[1], tx("txn_p1", EVM, 0.05, T0))
        assert row is not None and row.usd == pytest.approx(before.usd + 0.05)
        with pytest.raises(ServiceUnavailable):  # a migrated key exists: never made twice
            redis.create_key(entry(1))
    finally:
        redis.close()


def test_a_second_run_changes_nothing(
    config: Path, sqlite: SqliteStore, url: str, server: RedisServer
) -> None:
    migrate_state(config, url)
    held = counters(server)
    again = migrate_state(config, url)
    assert [line.split(",")[1] for line in again[1:]] == [" 0 written"] * 6
    assert counters(server) == held  # no new change number, line, member
    assert_same(sqlite, url)  # so no usage doubled, no line twice


def test_redis_follows_sqlite_written_after_a_first_run(
    config: Path, sqlite: SqliteStore, url: str, server: RedisServer
) -> None:
    migrate_state(config, url)
    sqlite.create_key(entry(5))
    sqlite.update_key(digest(1), None, lambda e: replace(e, name="renamed", rpm_limit=60))
    sqlite.delete_key(digest(4), None)
    sqlite.add_usage(usage(1, 50, 0.5), [tx("txn_d3", EVM, -0.5, T0 + timedelta(hours=1))])
    sqlite.credit(tx("txn_c3", SOL, 1.5, T0 + timedelta(hours=1)))
    sqlite.mark_payment(PAYMENTS[0], "settled", "0xlate")
    sqlite.credit_payment(PAYMENTS[1], tx("txn_p1", EVM, 0.05, T0))
    lines = migrate_state(config, url)
    # the feed: 2, 3 kept; 5 new; 1 and 4 written again after them, in sqlite's order
    assert lines[1] == "keys: 5 copied, 3 written, 2 unchanged"
    assert lines[4] == "transactions: 8 copied, 3 written, 5 unchanged"
    assert_same(sqlite, url)
    assert payment_states(server)[PAYMENTS[0]] == ("settled", "0xlate")
    assert payment_states(server)[PAYMENTS[1]] == ("credited", "0xsettled")


def test_sqlite_wins_over_newer_redis_data_and_redis_only_data_stays(
    config: Path, sqlite: SqliteStore, url: str, server: RedisServer
) -> None:
    migrate_state(config, url)
    redis = redis_store(url)
    try:
        redis.update_key(digest(2), None, lambda e: replace(e, name="changed on redis"))
        redis.add_usage(usage(1, 1, 1.0)[:1])  # key 1's lifetime row grows on Redis
        redis.create_key(entry(9))  # only on Redis
        redis.credit(tx("txn_redis", SOL, 2.0, T0))  # only on Redis
        redis.mark_payment(PAYMENTS[1], "failed")
    finally:
        redis.close()
    migrate_state(config, url)
    assert_same(sqlite, url)  # key 2 and its order, the usage row, the payment: sqlite's
    redis = redis_store(url)
    try:
        changes = redis.key_changes(0)
        assert [c.entry for c in changes if c.digest == digest(9)] == [entry(9)]
        assert "txn_redis" in [t.id for t in redis.transactions(SOL, 0, -1)]
        assert [p.id for p in redis.settled_payments()] == [PAYMENTS[1]]
    finally:
        redis.close()


def test_items_redis_made_itself_under_the_same_names_become_sqlites(
    config: Path, sqlite: SqliteStore, url: str, server: RedisServer
) -> None:
    later = NOW + timedelta(days=1)
    redis = redis_store(url)
    try:
        redis.credit(tx("txn_c1", SOL, 3.0, T0 + timedelta(hours=5)))  # sqlite's id, for SOL
        made_here = redis.ensure_wallet(EVM, NOW)  # another id for the same account
        assert redis.use_nonce(LIVE, later, NOW)  # a later expiry than sqlite's
    finally:
        redis.close()
    lines = migrate_state(config, url)
    assert lines[3] == "wallets: 2 copied, 2 written, 0 unchanged"
    assert lines[6] == "nonces: 1 copied, 0 written, 1 unchanged"
    assert_same(sqlite, url)  # txn_c1 is EVM's line again, the wallet sqlite's id
    redis = redis_store(url)
    try:
        assert "txn_c1" not in [t.id for t in redis.transactions(SOL, 0, -1)]
        assert redis.ensure_wallet(EVM, NOW).id != made_here.id
        assert not redis.use_nonce(LIVE, later, later - timedelta(seconds=1))  # kept
    finally:
        redis.close()
    with server.client() as c:  # usage rows of a period expire, lifetime rows never
        assert c.ttl(f"{PREFIX}usage:row:daily:2026-12-02/tenant:acme") > 30 * 86400
        assert c.ttl(f"{PREFIX}usage:row:lifetime/tenant:acme") == -1


def test_the_export_is_one_snapshot_while_another_process_writes(
    config: Path, sqlite: SqliteStore
) -> None:
    records = sqlite.export(NOW)
    first = next(records)
    assert isinstance(first, KeyChange)
    other = SqliteStore.open(config.parent / "state" / "aroutd.db")
    try:  # a daemon keeps writing: not blocked, and not seen by the export under way
        other.create_key(entry(7))
        other.credit(tx("txn_late", EVM, 1.0, T0))
    finally:
        other.close()
    rest = list(records)
    assert digest(7) not in [r.digest for r in rest if isinstance(r, KeyChange)]
    assert "txn_late" not in [r.id for r in rest if isinstance(r, Transaction)]
    assert [r for r in rest if isinstance(r, NonceRecord)] == [
        NonceRecord(nonce=LIVE, expires_at=NOW + timedelta(hours=1))
    ]
    assert digest(7) in [c.digest for c in sqlite.key_changes(0)]


def aroutd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aroutd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_the_command_line_migrates_and_logs_the_counts(
    config: Path, sqlite: SqliteStore, url: str
) -> None:
    out = aroutd("state", "migrate", "--config", str(config), "--to", url)
    assert out.returncode == 0, out.stderr
    db = config.parent / "state" / "aroutd.db"
    shown = url.replace(PASSWORD, "***")
    assert out.stdout.splitlines()[0] == f"copied {db} to {shown}"
    assert "keys: 4 copied, 4 written, 0 unchanged" in out.stdout.splitlines()
    (event,) = [json.loads(line) for line in out.stderr.splitlines()]
    assert event["event"] == "state_migrated"
    assert {k: event[k] for k in ("to", "keys", "usage", "transactions", "written")} == {
        "to": shown,
        "keys": 4,
        "usage": 14,
        "transactions": 5,
        "written": 31,
    }
    assert PASSWORD not in out.stdout + out.stderr
    assert_same(sqlite, url)


@pytest.mark.parametrize(
    ("to", "message"),
    [
        pytest.param(
            "redis://:hunter2@127.0.0.1:{free}/0", "cannot reach the state store", id="unreachable"
        ),
        pytest.param(
            "redis://:hunter2@127.0.0.1:{port}/0", "cannot reach the state store", id="password"
        ),
        pytest.param("http://:hunter2@127.0.0.1:{port}/", "not a redis://", id="scheme"),
        pytest.param("hunter2", "not a redis://", id="not-a-url"),
    ],
)
def test_a_bad_or_unreachable_redis_exits_1_without_the_password(
    config: Path, sqlite: SqliteStore, server: RedisServer, to: str, message: str
) -> None:
    target = to.format(free=unused_port(), port=server.port)
    out = aroutd("state", "migrate", "--config", str(config), "--to", target)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert "hunter2" not in out.stdout + out.stderr


def test_no_sqlite_file_is_refused_not_created(config: Path, url: str) -> None:
    db = config.parent / "state" / "aroutd.db"
    with pytest.raises(ConfigError, match="no state database to migrate"):
        migrate_state(config, url)
    assert not db.exists()
    out = aroutd("state", "migrate", "--config", str(config), "--to", url)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == f"{db}: no state database to migrate\n"
