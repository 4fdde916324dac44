"""The live state of a running daemon, shared by every connection.

Everything a request reads is reached from one :class:`Runtime`. The key table
is swapped as a whole on reload (one attribute assignment, atomic under trio's
single thread), and a request takes it once at authentication so it uses one
table from start to end (SPEC §11).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from .auth.signin import SigninSettings
from .auth.walletjwt import WalletTokens
from .authlimit import FailedAuthLimiter
from .config import Config
from .keytable import KeyTable
from .routing import known_providers
from .store.base import StateStore
from .upstream import UpstreamPool

__all__ = ["Runtime"]


@dataclass(slots=True, kw_only=True)
class Runtime:
    config: Config
    keytable: KeyTable
    store: StateStore
    tokens: WalletTokens | None  # None when [wallet] enabled = false
    pools: dict[str, UpstreamPool] = field(default_factory=dict)
    providers: frozenset[str] = frozenset()
    signin: SigninSettings | None = None
    auth_failures: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)
    # draining: set on SIGTERM; idle keep-alive connections close, responses say close
    draining: trio.Event = field(default_factory=trio.Event)
    idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    open_connections: int = 0
    reloads_ok: int = 0
    reloads_failed: int = 0

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

    def start_draining(self) -> None:
        """SIGTERM: idle keep-alive connections close now, busy ones after their response."""
        self.draining.set()
        for scope in list(self.idle_scopes):
            scope.cancel()

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()
