"""The live state of a running daemon, shared by every connection.

Everything a request reads is reached from one :class:`Runtime`. The key table
is swapped as a whole on reload (one attribute assignment, atomic under trio's
single thread), and a request takes it once at authentication so it uses one
table from start to end (SPEC §11).

Keys made over the management API are held in ``store_keys`` and changed in place,
on the event loop, by :meth:`Runtime.apply_key_changes`. A key is looked up in the
file's table first: when the file and the store hold the same hash, the file wins
(and the conflict is logged once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, get_args

import trio

from aroutd.auth.signin import SigninSettings
from aroutd.auth.walletjwt import WalletTokens
from aroutd.authlimit import FailedAuthLimiter
from aroutd.config.parse import Config
from aroutd.keytable.stored import StoredKeys
from aroutd.keytable.table import KeyEntry, KeyTable
from aroutd.metrics import Metrics
from aroutd.policy import principal_for_key
from aroutd.principal import AuthMethod, Principal
from aroutd.ratelimit import Limiter, LimiterBackend
from aroutd.routing import known_providers
from aroutd.shell import logsink
from aroutd.shell.upstream import UpstreamPool
from aroutd.store.base import KeyChange, StateStore
from aroutd.usage.book import UsageBook, key_subject, tenant_subject
from aroutd.usage.limits import Layer

if TYPE_CHECKING:  # payments imports this module
    from aroutd.shell.payments import Payments
    from aroutd.store.redis_authfail import RedisAuthFailures as AuthShare

__all__ = ["KEY_CACHE_SIZE", "Runtime"]

KEY_CACHE_SIZE = 65536  # keys in use at once; past it the cache starts over
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
UNPRICED_LOGGED = 1000  # distinct unpriced models logged; past it, only counted


@dataclass(slots=True, kw_only=True)
class Runtime:
    config: Config
    keytable: KeyTable
    store: StateStore
    tokens: WalletTokens | None  # None when [wallet] enabled = false
    pools: dict[str, UpstreamPool] = field(default_factory=dict)
    providers: frozenset[str] = frozenset()
    signin: SigninSettings | None = None
    store_keys: StoredKeys = field(default_factory=StoredKeys)
    _conflicts_logged: set[bytes] = field(default_factory=set)
    _tenant_index: tuple[KeyTable, dict[str, list[bytes]]] | None = None
    usage: UsageBook = field(default_factory=UsageBook)  # spend, committed in the background
    payments: Payments | None = None  # [x402] enabled
    store_ok: bool = True  # the state store answered the background tasks' last call
    limiter: LimiterBackend = field(default_factory=Limiter)  # SPEC §9 rate limits
    limiter_blocks: bool = False  # a network limiter (Redis): checked in a worker thread
    local_limiter: Limiter = field(default_factory=Limiter)  # its stand-in while it is away
    auth_share: AuthShare | None = None  # failed-auth counts shared through Redis
    pending_tokens: list[tuple[str, int, float]] = field(default_factory=list)  # for it
    wall_clock: Callable[[], float] = time.time  # Unix seconds, for the rate limits
    _unpriced_logged: set[str] = field(default_factory=set)
    auth_failures: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)
    # draining: set on SIGTERM; idle keep-alive connections close, responses say close
    draining: trio.Event = field(default_factory=trio.Event)
    idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    # (digest, auth method) -> (entry, principal) for the table in _cached_table;
    # emptied whenever rt.keytable is replaced, so a reload takes effect at once
    _key_cache: dict[tuple[bytes, str], tuple[KeyEntry, Principal]] = field(default_factory=dict)
    _cached_table: KeyTable | None = None
    open_connections: int = 0  # API connections (max_connections, the /metrics gauge)
    admin_connections: int = 0  # admin listener connections, limited on their own
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(
        cls, config: Config, keytable: KeyTable, store: StateStore, tokens: WalletTokens | None
    ) -> Runtime:
        return cls(
            config=config,
            keytable=keytable,
            store=store,
            tokens=tokens,
            pools={name: UpstreamPool(up) for name, up in config.upstreams.items()},
            providers=known_providers(config),
            signin=SigninSettings.from_config(config) if tokens is not None else None,
        )

    def key_principal(
        self, digest: bytes, kind: str, method: AuthMethod, now: datetime
    ) -> Principal | None:
        """The principal of an API or management key; None when unknown, of the
        wrong kind, disabled or expired (all answered alike, SPEC §4).

        Entries and principals are cached per key table: building them was a
        measurable part of every request.
        """
        table = self.keytable
        if self._cached_table is not table:
            self._key_cache.clear()
            self._cached_table = table
        hit = self._key_cache.get((digest, method))
        if hit is None:
            entry = self.find_key(digest)
            if entry is None or entry.tenant not in table.tenants:
                return None
            hit = (entry, principal_for_key(entry, table.tenants[entry.tenant], method))
            if len(self._key_cache) >= KEY_CACHE_SIZE:
                self._key_cache.clear()
            self._key_cache[(digest, method)] = hit
        entry, principal = hit
        return principal if entry.type == kind and entry.usable(now) else None

    def find_key(self, digest: bytes) -> KeyEntry | None:
        """The key with this digest: the key table's, else the store's."""
        entry = self.keytable.lookup(digest)
        return entry if entry is not None else self.store_keys.lookup(digest)

    async def file_keys_of(self, tenant: str) -> list[bytes]:
        """The digests of the tenant's API keys in the key table, in file order; the index
        is built once per table, in a worker thread (a million keys take a second)."""
        table = self.keytable
        if self._tenant_index is None or self._tenant_index[0] is not table:
            index = await trio.to_thread.run_sync(table.api_keys_by_tenant)
            self._tenant_index = (table, index)
            return index.get(tenant, [])
        return self._tenant_index[1].get(tenant, [])

    def apply_key_changes(self, changes: Sequence[KeyChange]) -> None:
        """Store keys written here or elsewhere: in effect for the very next request."""
        for digest in self.store_keys.apply(changes):
            for method in AUTH_METHODS:
                self._key_cache.pop((digest, method), None)
            self.log_conflict(digest)

    def log_unpriced(self, model: str) -> None:
        """An unpriced model is logged once (a bounded number of them: the model is the
        client's text)."""
        if model not in self._unpriced_logged and len(self._unpriced_logged) < UNPRICED_LOGGED:
            self._unpriced_logged.add(model)
            logsink.event("unpriced_model", model=model[:200])

    def spent(self, principal: Principal, now: datetime) -> list[Layer]:
        """(limit, limit_reset, spent) of the principal's key and of its tenant."""
        if principal.key_hash is None:
            return []
        entry = self.find_key(bytes.fromhex(principal.key_hash))
        tenant = self.keytable.tenants.get(principal.tenant)
        layers: list[Layer] = []
        if entry is not None and entry.limit is not None:
            spent = self.usage.spent(key_subject(principal.key_hash), now)
            layers.append((entry.limit, entry.limit_reset, spent))
        if tenant is not None and tenant.limit is not None:
            spent = self.usage.spent(tenant_subject(tenant.id), now)
            layers.append((tenant.limit, tenant.limit_reset, spent))
        return layers

    def log_conflicts(self) -> None:
        """After the key table changed: a hash it shares with the store is logged once."""
        for digest in list(self.store_keys.digests()):
            self.log_conflict(digest)

    def log_conflict(self, digest: bytes) -> None:
        """Log (once) a hash that both the key table and the store hold: the file's wins."""
        if digest in self._conflicts_logged or self.store_keys.lookup(digest) is None:
            return
        entry = self.keytable.lookup(digest)
        if entry is not None:
            self._conflicts_logged.add(digest)
            logsink.event("key_conflict", key_id=entry.id, hash=digest.hex(), kept="file")

    def start_draining(self) -> None:
        """SIGTERM: idle keep-alive connections close now, busy ones after their response."""
        self.draining.set()
        for scope in list(self.idle_scopes):
            scope.cancel()

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()
