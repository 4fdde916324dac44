"""The shared state store: one Redis for several hosts (SPEC §2 ``[state]``, §14).

It keeps the contract of :mod:`aroutd.store.base` exactly as ``sqlite.SqliteStore``
does; only the place differs. Every name starts with the hash tag ``{aroutd}:``, so
all of them live in one Redis Cluster slot and every script may touch several:

    {aroutd}:nonce:<nonce>             string: expires_at (unix s); PX until then
    {aroutd}:wallet:<account>          string: JSON {"id", "created_at"}
    {aroutd}:key:seq                   INCR counter: the keys' change numbers
    {aroutd}:key:feed                  zset: sha256 hex -> seq of its latest write
    {aroutd}:key:row:<sha256 hex>      hash: seq, deleted (0|1), tenant, entry (JSON;
                                       gone from a tombstone)
    {aroutd}:usage:seq                 INCR counter: the usage rows' change numbers
    {aroutd}:usage:feed                zset: "<period>/<subject>" -> seq
    {aroutd}:usage:row:<period>/<subject>  hash: seq, usd (HINCRBYFLOAT), input_tokens,
                                       output_tokens, cached_input_tokens, requests
    {aroutd}:tx:lines                  hash: transaction id -> JSON line (every id logged)
    {aroutd}:tx:n                      INCR counter: insertion order of the lines
    {aroutd}:tx:log:<account>          zset: "<n, 16 digits>:<id>" -> created_at
    {aroutd}:pay:row:<payment id>      hash: state, account, network, usd, tx_hash,
                                       request_id, created_at, updated_at
    {aroutd}:pay:settled               set: the ids of payments in state settled

Rules:

- Every operation that checks and writes, or writes several names, is one Lua script
  (:mod:`aroutd.store.redis_scripts`, EVALSHA): atomic for every process on the server.
  A write takes the next number of its feed's counter and sets it on the row and in the
  feed in the same script, so a feed read in seq order never skips a committed write.
- ``update_key`` runs the caller's ``change`` in Python between a read and a compare
  and set on the row's seq; a lost race reads again and calls ``change`` again (it must
  be pure). Feeds are read in pages of 1000, each page atomic; a row seen twice is
  returned once, in its latest state.
- Periods end on their own: a ``daily:``, ``weekly:`` or ``monthly:`` row expires 35,
  100 or 400 days after its last write; ``lifetime`` and ``credits`` rows never. An
  expired row's feed member is dropped when a feed read meets it.
- usd is summed by HINCRBYFLOAT (long double, 17 digits): a total may differ from the
  sqlite store's double sum in the last digit.
- Durability: an acknowledged write is as durable as the server makes it. Run Redis
  with ``appendonly yes`` and ``appendfsync always`` (the reply follows the fsync), or
  give ``wait_replicas`` > 0: each write is then followed by ``WAIT n 1000`` on the same
  connection, and fewer replicas acknowledging is 503.
- A server that cannot be reached or refuses the password at :meth:`RedisStore.open` is
  a ConfigError naming the URL with its password replaced by ``***``; any Redis error
  while serving is 503 ``state store unavailable``. Timeouts are 2 s and redis-py's
  retries are off (the caller retries); a dropped connection is replaced on next use.
- redis-py's client and its connection pool are thread-safe; ``rediss://`` is TLS.
- :meth:`RedisStore.import_records` (``aroutd state migrate``) sets items of another
  store's state, idempotently: its rules are in :mod:`aroutd.store.redis_import`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from aroutd.errors import ConfigError, ServiceUnavailable
from aroutd.keytable.table import KeyEntry
from aroutd.store import redis_rows as rows
from aroutd.store import redis_scripts as lua
from aroutd.store.base import (
    KeyChange,
    Payment,
    PaymentState,
    StateRecord,
    Transaction,
    UsageRow,
    WalletAccount,
)
from aroutd.usage.book import CREDITS_PERIOD, wallet_subject

if TYPE_CHECKING:
    from aroutd.store.redis_import import Imported

__all__ = ["PREFIX", "RedisStore", "redact_url"]

_T = TypeVar("_T")
PREFIX = "{aroutd}:"  # the hash tag: one Cluster slot for every name
_NONCE = PREFIX + "nonce:"
_WALLET = PREFIX + "wallet:"
_KEY_SEQ, _KEY_FEED, _KEY_ROW = PREFIX + "key:seq", PREFIX + "key:feed", PREFIX + "key:row:"
_USAGE_SEQ, _USAGE_FEED = PREFIX + "usage:seq", PREFIX + "usage:feed"
_USAGE_ROW = PREFIX + "usage:row:"
_TX_LINES, _TX_COUNTER, _TX_LOG = PREFIX + "tx:lines", PREFIX + "tx:n", PREFIX + "tx:log:"
_PAY_ROW, _PAY_SETTLED = PREFIX + "pay:row:", PREFIX + "pay:settled"
_DAY_S = 86400
_TTL_S = {"daily": 35 * _DAY_S, "weekly": 100 * _DAY_S, "monthly": 400 * _DAY_S}
TIMEOUT_S = 2.0  # connect and socket timeouts
HEALTH_CHECK_S = 10  # an idle connection is PINGed before reuse
_WAIT_TIMEOUT_MS = 1000
_PAGE_ROWS = 1000  # feed rows per script: a long read never blocks the server for long
_CAS_TRIES = 100  # update_key's compare and set, lost this often in a row: 503
_UNAVAILABLE = "state store unavailable"


class RedisStore:
    """:class:`aroutd.store.base.StateStore` on Redis; open it with :meth:`open`."""

    __slots__ = ("_client", "_lua", "_url", "_wait_replicas", "_wallets")

    def __init__(self, client: redis.Redis, url: str, *, wait_replicas: int = 0) -> None:
        self._client = client
        self._url = redact_url(url)
        self._wait_replicas = wait_replicas
        self._lua = {name: client.register_script(getattr(lua, name)) for name in lua.__all__}
        self._wallets: dict[str, WalletAccount] = {}  # immutable records, safe to keep

    @classmethod
    def open(cls, url: str, *, password: str | None = None, wait_replicas: int = 0) -> RedisStore:
        """Connect to ``url`` (``redis://``, ``rediss://``; a password in the URL wins
        over ``password``) and check it answers; a ConfigError when it does not."""
        shown = redact_url(url)
        try:
            client = redis.Redis.from_url(
                url,
                password=password,
                decode_responses=True,
                socket_connect_timeout=TIMEOUT_S,
                socket_timeout=TIMEOUT_S,
                health_check_interval=HEALTH_CHECK_S,
                retry=Retry(NoBackoff(), 0),
            )
        except (RedisError, ValueError) as exc:
            raise ConfigError([f"{shown}: cannot reach the state store ({_name(exc)})"]) from None
        try:
            client.ping()
        except RedisError as exc:
            client.close()
            raise ConfigError([f"{shown}: cannot reach the state store ({_name(exc)})"]) from None
        return cls(client, url, wait_replicas=wait_replicas)

    def __repr__(self) -> str:
        return f"RedisStore({self._url!r})"

    def use_nonce(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        # The record's own expires_at decides, against the caller's now (as sqlite); its
        # PX only lets the server forget it afterwards.
        ttl_ms = max(1, int((expires_at - now) / timedelta(milliseconds=1)))
        args = [expires_at.timestamp(), now.timestamp(), ttl_ms]
        return bool(self._write("USE_NONCE", [_NONCE + nonce], args) == 1)

    def ensure_wallet(self, account: str, now: datetime) -> WalletAccount:
        known = self._wallets.get(account)
        if known is not None:
            return known
        record = json.dumps({"id": f"wa_{secrets.token_hex(8)}", "created_at": now.timestamp()})
        held = json.loads(self._write("ENSURE_WALLET", [_WALLET + account], [record]))
        created = datetime.fromtimestamp(held["created_at"], UTC)
        wallet = WalletAccount(id=held["id"], account=account, created_at=created)
        self._wallets[account] = wallet
        return wallet

    def key_changes(self, after: int) -> Sequence[KeyChange]:
        latest: dict[str, KeyChange] = {}
        for hexdigest, seq, data in self._feed("KEY_PAGE", _KEY_FEED, _KEY_ROW, after):
            latest.pop(hexdigest, None)
            latest[hexdigest] = rows.change(hexdigest, seq, data)
        return sorted(latest.values(), key=lambda c: c.seq)

    def create_key(self, entry: KeyEntry) -> KeyChange:
        hexdigest, data = entry.digest.hex(), rows.entry_json(entry)
        keys = [_KEY_ROW + hexdigest, _KEY_SEQ, _KEY_FEED]
        seq = self._write("CREATE_KEY", keys, [hexdigest, entry.tenant, data])
        return rows.change(hexdigest, seq, data)

    def update_key(
        self, digest: bytes, tenant: str | None, change: Callable[[KeyEntry], KeyEntry]
    ) -> KeyChange | None:
        hexdigest = digest.hex()
        keys = [_KEY_ROW + hexdigest, _KEY_SEQ, _KEY_FEED]
        for _ in range(_CAS_TRIES):
            seq, data = self._run(lambda: _strs(self._client.hmget(keys[0], ["seq", "entry"])))
            current = None if data is None else rows.change(hexdigest, int(seq or 0), data).entry
            if current is None or (tenant is not None and current.tenant != tenant):
                return None
            new = change(current)
            new_data = rows.entry_json(new)
            args = [hexdigest, seq, new.tenant, new_data]
            written = self._write("UPDATE_KEY", keys, args)
            if written is not None:  # None: another write came between, read it again
                return rows.change(hexdigest, written, new_data)
        raise ServiceUnavailable(_UNAVAILABLE)

    def delete_key(self, digest: bytes, tenant: str | None) -> KeyChange | None:
        hexdigest = digest.hex()
        keys = [_KEY_ROW + hexdigest, _KEY_SEQ, _KEY_FEED]
        args = [hexdigest] if tenant is None else [hexdigest, tenant]
        seq = self._write("DELETE_KEY", keys, args)
        return None if seq is None else KeyChange(seq, digest, None)

    def add_usage(
        self, deltas: Sequence[UsageRow], debits: Sequence[Transaction] = ()
    ) -> Sequence[UsageRow]:
        keys: list[str] = [_USAGE_SEQ, _USAGE_FEED, _TX_LINES, _TX_COUNTER]
        args: list[str | int | float] = [len(deltas), len(debits)]
        for d in deltas:
            member = _member(d.subject, d.period)
            keys.append(_USAGE_ROW + member)
            args += [member, d.usd, d.input_tokens, d.output_tokens]
            args += [d.cached_input_tokens, d.requests, _TTL_S.get(d.period.split(":")[0], 0)]
        for tx in debits:
            keys.append(_TX_LOG + tx.account)
            args += [tx.id, rows.tx_json(tx), tx.created_at.timestamp()]
        totals = self._write("USAGE_STEP", keys, args)
        return [rows.row(d.subject, d.period, t) for d, t in zip(deltas, totals, strict=True)]

    def usage_changes(self, after: int) -> Sequence[UsageRow]:
        latest: dict[str, UsageRow] = {}
        for member, *totals in self._feed("USAGE_PAGE", _USAGE_FEED, _USAGE_ROW, after):
            period, _, subject = member.partition("/")
            latest.pop(member, None)
            latest[member] = rows.row(subject, period, totals)
        return sorted(latest.values(), key=lambda r: r.seq)

    def credit(self, tx: Transaction) -> UsageRow:
        subject = wallet_subject(tx.account)
        keys, args = _credit_step(tx)
        totals = self._write("CREDIT", keys, args)
        if not totals:  # the id was logged, but as a debit: the row may not exist
            return UsageRow(subject=subject, period=CREDITS_PERIOD)
        return rows.row(subject, CREDITS_PERIOD, totals)

    def transactions(self, account: str, offset: int, limit: int) -> Sequence[Transaction]:
        if limit == 0:
            return []
        start = max(offset, 0)
        stop = -1 if limit < 0 else start + limit - 1  # sqlite: LIMIT -1 is no limit

        def op() -> list[Any]:
            members = _strs(self._client.zrevrange(_TX_LOG + account, start, stop))
            ids = [str(m).partition(":")[2] for m in members]
            return _strs(self._client.hmget(_TX_LINES, ids)) if ids else []

        return [rows.transaction(json.loads(line)) for line in self._run(op)]

    def claim_payment(self, payment: Payment) -> bool:
        at = payment.created_at.timestamp()
        fields: dict[str, str | float] = {
            "state": "pending",
            "account": payment.account,
            "network": payment.network,
            "usd": payment.usd,
            "created_at": at,
            "updated_at": at,
        }
        if payment.request_id is not None:
            fields["request_id"] = payment.request_id
        args = [v for pair in fields.items() for v in pair]
        return bool(self._write("CLAIM_PAYMENT", [_PAY_ROW + payment.id], args) == 1)

    def release_payment(self, payment_id: str) -> None:
        self._write("RELEASE_PAYMENT", [_PAY_ROW + payment_id], [])

    def mark_payment(
        self, payment_id: str, state: PaymentState, transaction: str | None = None
    ) -> None:
        args: list[str | float] = [payment_id, state, datetime.now(UTC).timestamp()]
        if transaction is not None:
            args.append(transaction)
        self._write("MARK_PAYMENT", [_PAY_ROW + payment_id, _PAY_SETTLED], args)

    def credit_payment(self, payment_id: str, tx: Transaction) -> UsageRow | None:
        keys, args = _credit_step(tx)
        keys = [_PAY_ROW + payment_id, _PAY_SETTLED, *keys]
        totals = self._write("CREDIT_PAYMENT", keys, [payment_id, tx.created_at.timestamp(), *args])
        if totals is None:
            return None
        return rows.row(wallet_subject(tx.account), CREDITS_PERIOD, totals)

    def settled_payments(self) -> Sequence[Payment]:
        def op() -> list[tuple[str, dict[str, str]]]:
            ids = sorted(cast("set[str]", self._client.smembers(_PAY_SETTLED)))
            pipe = self._client.pipeline(transaction=False)
            for payment_id in ids:
                pipe.hgetall(_PAY_ROW + payment_id)
            return list(zip(ids, pipe.execute(), strict=True))

        # a payment credited between the two reads is no longer settled: left out
        return [rows.payment(i, f) for i, f in self._run(op) if f.get("state") == "settled"]

    def import_records(self, records: Iterable[StateRecord], now: datetime) -> list[Imported]:
        """Set each record in Redis (keys and usage in the order given), idempotently;
        how many of each kind were copied and written (redis_import)."""
        from aroutd.store.redis_import import import_records  # it imports this module

        return import_records(self._write, records, now)

    def close(self) -> None:
        self._client.close()

    def _run(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except RedisError as exc:
            raise ServiceUnavailable(_UNAVAILABLE) from exc

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._lua[name]
        return self._run(lambda: script(keys=keys, args=args))

    def _write(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script ``name``, its writes acknowledged by ``wait_replicas`` replicas
        (WAIT on the connection that wrote) when that is above 0."""
        if self._wait_replicas <= 0:
            return self._eval(name, keys, args)
        script = self._lua[name]

        def op() -> tuple[Any, int]:
            with self._client.pipeline(transaction=False) as pipe:
                script(keys=keys, args=args, client=pipe)
                pipe.wait(self._wait_replicas, _WAIT_TIMEOUT_MS)
                result, acked = pipe.execute()
            return result, acked

        result, acked = self._run(op)
        if acked < self._wait_replicas:
            raise ServiceUnavailable(_UNAVAILABLE)
        return result

    def _feed(self, name: str, feed: str, prefix: str, after: int) -> Iterator[list[Any]]:
        """The rows of ``feed`` after change number ``after``, page by page."""
        while True:
            cursor, scanned, page = self._eval(name, [feed], [after, _PAGE_ROWS, prefix])
            yield from page
            if scanned < _PAGE_ROWS:
                return
            after = cursor


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or ``?password=``) shown as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _strs(reply: object) -> list[str | None]:
    """A list reply (the client decodes every answer to str)."""
    return cast("list[str | None]", reply)


def _name(exc: Exception) -> str:
    return type(exc).__name__


def _member(subject: str, period: str) -> str:
    if "/" in period:
        raise ValueError(f"a usage period has no '/': {period!r}")
    return f"{period}/{subject}"


def _credit_step(tx: Transaction) -> tuple[list[str], list[str | float]]:
    """KEYS and ARGV of the credit step (redis_scripts.CREDIT) for ``tx``."""
    member = _member(wallet_subject(tx.account), CREDITS_PERIOD)
    keys = [_USAGE_SEQ, _USAGE_FEED, _USAGE_ROW + member, _TX_LINES, _TX_COUNTER]
    keys.append(_TX_LOG + tx.account)
    return keys, [member, tx.amount, tx.id, rows.tx_json(tx), tx.created_at.timestamp()]
