"""The daemon configuration (SPEC §2): frozen values parsed once from TOML.

:func:`parse_config` turns the text of ``aroutd.toml`` into a :class:`Config` or
raises :class:`~aroutd.errors.ConfigError` listing *every* problem as
"FILE:LINE: message". Rules: unknown keys anywhere are errors; every key has the
SPEC default; relative paths are resolved against the config file's folder;
``${VAR}`` and ``${file:PATH}`` are expanded in every string value before it is
read (``$${`` is a literal ``${``); messages never show a string value, since
values may be secrets. :func:`aroutd.shell.files.load_config` reads the file
and hands its text here, with a reader for the ``${file:...}`` references. The
dataclasses live in :mod:`aroutd.config.values` and are importable from here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import posixpath
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from aroutd.auth import evm, solana
from aroutd.config.expand import FileReader, absolute, expand_values
from aroutd.config.tomlpos import Problems, Table, load_toml
from aroutd.config.tomlscan import dotted, scan_positions
from aroutd.config.values import (
    Config,
    KeysConfig,
    Price,
    RouteConfig,
    ServerConfig,
    StateConfig,
    UpstreamConfig,
    WalletConfig,
    X402Config,
)
from aroutd.config.values import IPNetwork as IPNetwork  # re-exported: forwarding uses it
from aroutd.errors import BadRequest

__all__ = [
    "X402_NETWORKS",
    "Config",
    "KeysConfig",
    "Price",
    "RouteConfig",
    "ServerConfig",
    "StateConfig",
    "UpstreamConfig",
    "WalletConfig",
    "X402Config",
    "parse_config",
]

_CAIP2_RE = re.compile(r"[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2 token
_HOST_PORT_RE = re.compile(r"(?:\[([^\[\]]+)\]|([^\[\]:]+)):([0-9]{1,5})")
_EVM_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_SOLANA_ADDRESS_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_WALLET_DEFAULTS = WalletConfig(jwt_secret_file=Path())  # the defaults, for the readers
# The networks SPEC §10 knows a USDC asset for (the wallet's default networks too).
X402_NETWORKS = frozenset(_WALLET_DEFAULTS.networks)
_X402_DEFAULTS = X402Config()
_T = TypeVar("_T")


def parse_config(
    text: str, *, path: Path, cwd: Path, environ: Mapping[str, str], read_file: FileReader
) -> Config:
    """The :class:`Config` in ``text``; ``path`` names the file in messages and anchors paths.

    A relative ``path`` is taken against ``cwd``; ``read_file`` reads the ``${file:PATH}``
    references (the shell's reads the disk).
    """
    config_path = Path(posixpath.normpath(cwd / path))
    base = config_path.parent
    problems = Problems(str(path), lambda: scan_positions(text))
    data = expand_values(load_toml(text, str(path)), (), problems, environ, base, read_file)
    root = Table(problems, (), data)
    keys = root.table("keys")
    upstreams = {n: _upstream(n, t, base) for n, t in _table_map(root.table("upstreams")).items()}
    config = Config(
        path=config_path,
        server=_server(root.table("server"), base),
        keys=_fields(keys, KeysConfig, file=_path(keys, "file", "keys.toml", base)),
        state=_state(root.table("state"), base, _state_directory(environ)),
        wallet=_wallet(root.table("wallet"), base, _state_directory(environ)),
        x402=_x402(root.table("x402")),
        upstreams=upstreams,
        routes=tuple(_route(t, upstreams) for t in root.tables("routes")),
        pricing={n: _price(n, t) for n, t in _table_map(root.table("pricing")).items()},
    )
    _check_prefixes(root, config.routes)
    if config.x402.enabled and not config.wallet.enabled:
        root.table("x402").problem("enabled", "needs [wallet] enabled (payers get a wallet JWT)")
    root.finish()
    problems.raise_if_any()
    return config


def _fields(t: Table, cls: Callable[..., _T], **given: Any) -> _T:
    """``cls`` from ``given`` and, for every other field, ``t``'s value of the default's type."""
    values = dict(given)
    for f in dataclasses.fields(cast(Any, cls)):
        if f.name in values:
            continue
        default = f.default
        if isinstance(default, bool):
            values[f.name] = t.boolean(f.name, default)
        elif isinstance(default, int):
            values[f.name] = t.integer(f.name, default)
        elif isinstance(default, float):
            values[f.name] = t.number(f.name, default)
        elif isinstance(default, str):
            values[f.name] = t.string(f.name, default)
        elif isinstance(default, tuple) and default and isinstance(default[0], float):
            values[f.name] = t.numbers(f.name, default)
        else:
            values[f.name] = t.strings(f.name, cast(tuple[str, ...], default))
    t.finish()
    return cls(**values)


def _table_map(t: Table) -> dict[str, Table]:
    """A table of tables (``[upstreams.NAME]``, ``[pricing."p/m"]``)."""
    tables = {name: t.table(name) for name in t.data}
    return {name: sub for name, sub in tables.items() if isinstance(t.data[name], dict)}


def _path(t: Table, key: str, default: str, base: Path, default_base: Path | None = None) -> Path:
    """A path setting against ``base``; when it is not set, ``default`` against
    ``default_base`` (``base`` unless given: systemd's $STATE_DIRECTORY, say)."""
    value = t.string(key, "")
    if t.has(key) and not value:
        t.problem(key, "must not be empty")
    if not value:
        return absolute(default_base or base, default)
    return absolute(base, value)


def _state_directory(environ: Mapping[str, str]) -> Path | None:
    """systemd's $STATE_DIRECTORY (its first entry when StateDirectory= names several),
    where state goes when the config does not say (an absolute path only)."""
    first = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first.startswith("/") else None


def _optional_path(t: Table, key: str, base: Path) -> Path | None:
    value = t.string(key, "")
    return absolute(base, value) if value else None


def _host_port(t: Table, key: str, value: str) -> tuple[str, int] | None:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``, the v6 host without brackets."""
    m = _HOST_PORT_RE.fullmatch(value)
    if m is None or int(m.group(3)) > 65535:
        t.problem(key, f'{value!r} is not "host:port" or "[v6]:port"')
        return None
    if m.group(1) is not None:
        try:
            ipaddress.IPv6Address(m.group(1))
        except ValueError:
            t.problem(key, f"{value!r}: the part in [] is not an IPv6 address")
            return None
    return m.group(1) or m.group(2), int(m.group(3))


def _url_ok(url: str, *, bare: bool) -> bool:
    """An http(s) URL with a host and a valid port (``bare``: no user, query or fragment)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    extras = parts.username is not None or parts.query or parts.fragment
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not (bare and extras)


def _server(t: Table, base: Path) -> ServerConfig:
    listen = [_host_port(t, "listen", item) for item in t.strings("listen", ("127.0.0.1:8080",))]
    admin = t.string("admin_listen", "127.0.0.1:9901")
    proxies = []
    for cidr in t.strings("trusted_proxies"):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            t.problem("trusted_proxies", f"{cidr!r} is not an IP network (CIDR)")
    public_url = t.string("public_url", "http://127.0.0.1:8080").rstrip("/")
    if not _url_ok(public_url, bare=True):
        t.problem("public_url", "must be an http:// or https:// URL with a host")
    tls_cert = _optional_path(t, "tls_cert", base)
    tls_key = _optional_path(t, "tls_key", base)
    if (tls_cert is None) != (tls_key is None):
        t.problem("tls_cert" if tls_cert is None else "tls_key", "tls_cert and tls_key go together")
    return _fields(
        t,
        ServerConfig,
        listen=tuple(hp for hp in listen if hp is not None),
        admin_listen=_host_port(t, "admin_listen", admin) if admin else None,
        public_url=public_url,
        trusted_proxies=tuple(proxies),
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def _state(t: Table, base: Path, state_dir: Path | None) -> StateConfig:
    backend = t.string("backend", "sqlite")
    if backend not in ("sqlite", "redis"):
        t.problem("backend", 'must be "sqlite" or "redis"')
    redis_url = t.string("redis_url", "")
    if backend == "redis" and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        t.problem("redis_url", 'backend = "redis" needs a redis://, rediss:// or unix:// URL')
    path = _path(t, "path", "aroutd.db" if state_dir else "state/aroutd.db", base, state_dir)
    return _fields(t, StateConfig, backend=backend, path=path, redis_url=redis_url)


def _networks(t: Table, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    networks = t.strings(key, default)
    for n in networks:
        if not _CAIP2_RE.fullmatch(n):
            t.problem(key, f"{n!r} is not a CAIP-2 chain id (namespace:reference)")
    return networks


def _wallet(t: Table, base: Path, state_dir: Path | None) -> WalletConfig:
    previous = t.strings("jwt_previous_secret_files")
    if not all(previous):
        t.problem("jwt_previous_secret_files", "must not hold empty paths")
    return _fields(
        t,
        WalletConfig,
        jwt_secret_file=_path(
            t, "jwt_secret_file", "jwt.secret" if state_dir else "state/jwt.secret", base, state_dir
        ),
        jwt_previous_secret_files=tuple(absolute(base, p) for p in previous if p),
        networks=_networks(t, "networks", _WALLET_DEFAULTS.networks),
        **{k: _rate_limit(t, k) for k in ("rpm_limit", "rpd_limit", "tpm_limit")},
    )


def _rate_limit(t: Table, key: str) -> int | None:
    """A rate limit (SPEC §9): a positive integer up to 10^12, or absent."""
    if not t.has(key):
        return None
    value = t.integer(key, 1)
    if value > 10**12:
        t.problem(key, "must be at most 10^12")
    return value


def _x402(t: Table) -> X402Config:
    facilitator_url = t.string("facilitator_url", _X402_DEFAULTS.facilitator_url)
    if not _url_ok(facilitator_url, bare=False):
        t.problem("facilitator_url", "must be an http:// or https:// URL with a host")
    x = _fields(
        t,
        X402Config,
        facilitator_url=facilitator_url,
        networks=_networks(t, "networks", _X402_DEFAULTS.networks),
    )
    for n in x.networks:
        if n not in X402_NETWORKS and _CAIP2_RE.fullmatch(n):
            t.problem("networks", f"{n!r} has no known USDC asset (SPEC §10)")
    if x.pay_to_evm and not _EVM_ADDRESS_RE.fullmatch(x.pay_to_evm):
        t.problem("pay_to_evm", "must be a 0x address (40 hex digits)")
    elif x.pay_to_evm and not _eip55_ok(x.pay_to_evm):
        t.problem("pay_to_evm", "mixed case that is not its EIP-55 checksum (a typo?)")
    if x.pay_to_solana and not _solana_ok(x.pay_to_solana):
        t.problem("pay_to_solana", "must be a base58 Solana address")
    if list(x.topup_tiers_usd) != sorted(set(x.topup_tiers_usd)):
        t.problem("topup_tiers_usd", "must be ascending, each tier once")
    if any(c in x.facilitator_token for c in "\r\n\0"):
        t.problem("facilitator_token", "must not contain CR, LF or NUL")
    kinds = {n.split(":", 1)[0] for n in x.networks} if x.enabled else set()
    if "eip155" in kinds and not x.pay_to_evm:
        t.problem("pay_to_evm", "must be set when x402 is enabled with an eip155 network")
    if "solana" in kinds and not x.pay_to_solana:
        t.problem("pay_to_solana", "must be set when x402 is enabled with a solana network")
    if x.topup_usd > x.max_topup_usd or any(a > x.max_topup_usd for a in x.topup_tiers_usd):
        t.problem("max_topup_usd", "topup_usd and every topup_tiers_usd must be <= max_topup_usd")
    return x


def _eip55_ok(address: str) -> bool:
    try:
        evm.parse_address(address)
    except BadRequest:
        return False
    return True


def _solana_ok(address: str) -> bool:
    try:
        solana.parse_address(address)
    except BadRequest:
        return False
    return True


def _upstream(name: str, t: Table, base: Path) -> UpstreamConfig:
    url = t.string("url", "")
    if not t.has("url"):
        t.problem("url", "is required")
    elif not _url_ok(url, bare=True):
        t.problem("url", "must be an http:// or https:// URL with a host (no user, query or #)")
    parts = urlsplit(url) if _url_ok(url, bare=True) else urlsplit("http://invalid")
    auth_header = t.string("auth_header", "Authorization")
    if not _HEADER_NAME_RE.fullmatch(auth_header):
        t.problem("auth_header", "must be an HTTP header name")
    auth_value = t.string("auth_value", "")
    if any(c in auth_value for c in "\r\n\0"):  # would split or end the upstream header
        t.problem("auth_value", "must not contain CR, LF or NUL")
    return _fields(
        t,
        UpstreamConfig,
        name=name,
        url=url,
        scheme=parts.scheme,
        host=parts.hostname or "",
        port=parts.port or (443 if parts.scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        auth_header=auth_header,
        auth_value=auth_value,
        pool_size=t.integer("pool_size", 64, minimum=0),
        ca_file=_optional_path(t, "ca_file", base),
    )


def _route(t: Table, upstreams: Mapping[str, UpstreamConfig]) -> RouteConfig:
    pattern = t.string("pattern", "") if t.has("pattern") else None
    prefix = t.string("prefix", "") if t.has("prefix") else None
    if (pattern is None) == (prefix is None):
        t.problem("prefix" if pattern is None else "pattern", "give exactly one of pattern, prefix")
    for key, value in (("pattern", pattern), ("prefix", prefix)):
        if value is not None and not value.startswith("/"):
            t.problem(key, "must start with /")
    upstream = t.string("upstream", "")
    if upstream not in upstreams:
        t.problem(
            "upstream", f"{upstream!r} is not a defined upstream" if upstream else "is required"
        )
    provider = t.string("provider", "")
    if not provider and isinstance(t.data.get("provider", ""), str):
        t.problem("provider", "is required")
    strip = t.string("strip_prefix", "")
    if strip and (not strip.startswith("/") or not (prefix or strip).startswith(strip)):
        t.problem("strip_prefix", "must start with / and begin the route's prefix")
    mu = t.table("model_upstreams")
    model_upstreams = {key: mu.string(key, "") for key in mu.data}
    for key, value in model_upstreams.items():
        if value not in upstreams and isinstance(mu.data[key], str):
            mu.problem(key, f"{value!r} is not a defined upstream")
    mu.finish()
    return _fields(
        t,
        RouteConfig,
        pattern=pattern,
        prefix=prefix,
        upstream=upstream,
        provider=provider,
        strip_prefix=strip,
        model_upstreams=model_upstreams,
    )


def _check_prefixes(root: Table, routes: tuple[RouteConfig, ...]) -> None:
    seen: set[str] = set()
    for i, route in enumerate(routes):
        if route.prefix is not None and route.prefix in seen:
            root.problems.add(
                ("routes", i, "prefix"), f"routes[{i}].prefix: {route.prefix!r} is already routed"
            )
        seen.add(route.prefix or "")


def _price(name: str, t: Table) -> Price:
    provider, _, model = name.partition("/")
    if not provider or not model:
        t.problems.add(t.path, f'{dotted(t.path)}: the model must be "provider/model"')
    cached = t.number("cached_input", 0.0, positive=False) if t.has("cached_input") else None
    return _fields(
        t,
        Price,
        input=t.number("input", 0.0, positive=False),
        output=t.number("output", 0.0, positive=False),
        cached_input=cached,
    )
