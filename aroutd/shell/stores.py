"""The state store a config names (SPEC §2 ``[state]``, §14), opened once per process.

``backend = "sqlite"`` (the default): the file at ``path``, for one host.
``backend = "redis"``: the server at ``redis_url`` (``redis://``, ``rediss://`` for TLS,
``unix://``; a password in the URL, usually ``${file:…}``), shared by every instance
on every host. Either answers the same :class:`~aroutd.store.base.StateStore`
contract. A store that cannot be reached at start is a ConfigError naming it (the URL
without its password).
"""

from __future__ import annotations

from aroutd.config.parse import Config
from aroutd.store.base import StateStore

__all__ = ["open_store"]


def open_store(cfg: Config) -> StateStore:
    if cfg.state.backend == "redis":
        from aroutd.store.redis import RedisStore  # only a Redis deployment loads it

        return RedisStore.open(cfg.state.redis_url)
    from aroutd.store.sqlite import SqliteStore

    return SqliteStore.open(cfg.state.path)
