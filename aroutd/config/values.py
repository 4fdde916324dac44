"""The daemon configuration's values (SPEC §2): frozen dataclasses with the SPEC defaults.

Parsed from ``aroutd.toml`` by :func:`aroutd.config.parse.parse_config`, which reads
every field that has a plain default by that default's type; import these names
from :mod:`aroutd.config.parse`. Relative paths here are already absolute, and
secrets (``auth_value``, ``redis_url``) are kept out of ``repr``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Config",
    "IPNetwork",
    "KeysConfig",
    "Price",
    "RouteConfig",
    "ServerConfig",
    "StateConfig",
    "UpstreamConfig",
    "WalletConfig",
    "X402Config",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 8080),)  # (host, port); v6 without []
    admin_listen: tuple[str, int] | None = ("127.0.0.1", 9901)  # None: disabled ("")
    public_url: str = "http://127.0.0.1:8080"
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_protocol: bool = False
    tls_cert: Path | None = None  # both set = terminate TLS here
    tls_key: Path | None = None
    reuse_port: bool = False
    max_connections: int = 10000
    max_header_bytes: int = 16384
    max_body_bytes: int = 10485760
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0
    drain_timeout_s: float = 30.0
    allow_query_key: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysConfig:
    file: Path  # absolute (resolved against the config file's folder)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    backend: str = "sqlite"  # "sqlite" | "redis"
    path: Path  # absolute
    redis_url: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletConfig:
    enabled: bool = True
    jwt_secret_file: Path  # absolute
    jwt_previous_secret_files: tuple[Path, ...] = ()
    jwt_ttl_s: int = 86400
    siwx_max_age_s: int = 300
    networks: tuple[str, ...] = (
        "eip155:8453",
        "eip155:84532",
        "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    )
    allowed_providers: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    # rate limits of every wallet account (SPEC §9), as for keys; None = none
    rpm_limit: int | None = None
    rpd_limit: int | None = None
    tpm_limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class X402Config:
    enabled: bool = False
    facilitator_url: str = "https://x402.org/facilitator"
    pay_to_evm: str = ""
    pay_to_solana: str = ""
    topup_usd: float = 5.0
    topup_tiers_usd: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0)
    max_topup_usd: float = 100.0
    networks: tuple[str, ...] = ("eip155:8453",)
    # sent as "Authorization: Bearer <token>" to the facilitator; "" sends none
    facilitator_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    name: str
    url: str  # as written, e.g. "https://api.openai.com" (a path part is a base path)
    scheme: str  # "http" | "https"
    host: str
    port: int
    base_path: str  # "" or "/something" without trailing slash, prepended to forwarded paths
    auth_header: str = "Authorization"
    auth_value: str = field(default="", repr=False)  # after ${VAR} / ${file:..} expansion
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 300.0
    pool_size: int = 64
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfig:
    pattern: str | None = None  # fnmatch on the path; exactly one of pattern / prefix
    prefix: str | None = None
    upstream: str
    provider: str
    strip_prefix: str = ""
    rewrite_model: bool = False
    model_upstreams: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per 1M tokens."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None  # None: cached input tokens cost `input`


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path  # the config file, absolute
    server: ServerConfig
    keys: KeysConfig
    state: StateConfig
    wallet: WalletConfig
    x402: X402Config
    upstreams: Mapping[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]  # in file order
    pricing: Mapping[str, Price]  # canonical model "provider/model" -> Price
