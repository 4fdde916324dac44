"""aroutd's side of the harness: a temp config (SPEC §2), key tables, the wallet JWT.

Pure writers: each takes the directory and the values, writes files, returns paths
or strings. The generated API key is ``lr_live_`` + 48 hex; the key table stores
only its SHA-256 (SPEC §3).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "AroutdFiles",
    "ConfigOptions",
    "new_api_key",
    "sha256_hex",
    "wallet_jwt",
    "write_aroutd_files",
    "write_big_keytable",
    "write_keytable",
]

WALLET_ACCOUNT = "eip155:8453:0x" + "1234567890" * 4  # digits only: EIP-55 leaves it unchanged


def new_api_key() -> str:
    return "lr_live_" + secrets.token_hex(24)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AroutdFiles:
    config: Path
    keys: Path
    jwt_secret: Path
    public_url: str
    api_key: str = field(repr=False)


def _keys_header(api_key: str) -> str:
    return (
        "[tenants.bench]\n\n[tenants.t]\n\n"
        f'[[keys]]\nid = "bench"\ntenant = "bench"\nsha256 = "{sha256_hex(api_key)}"\n\n'
    )


def write_keytable(path: Path, api_key: str, extra_keys: list[str] | None = None) -> None:
    """The bench tenant and key, plus optional extra keys (ids extra1..) in tenant t."""
    parts = [_keys_header(api_key)]
    for i, key in enumerate(extra_keys or [], start=1):
        parts.append(f'[[keys]]\nid = "extra{i}"\ntenant = "t"\nsha256 = "{sha256_hex(key)}"\n\n')
    _atomic_write(path, "".join(parts).encode())


def write_big_keytable(
    path: Path, api_key: str, count: int, extra_keys: list[str] | None = None
) -> int:
    """``count`` filler keys k1..kN in tenant t plus the bench key; returns bytes written."""
    head = _keys_header(api_key)
    for i, key in enumerate(extra_keys or [], start=1):
        head += f'[[keys]]\nid = "extra{i}"\ntenant = "t"\nsha256 = "{sha256_hex(key)}"\n\n'
    sha = hashlib.sha256
    body = "".join(
        f'[[keys]]\nid = "k{i}"\ntenant = "t"\nsha256 = "{sha(b"filler-%d" % i).hexdigest()}"\n\n'
        for i in range(1, count + 1)
    )
    data = (head + body).encode()
    _atomic_write(path, data)
    return len(data)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigOptions:
    """What a bench may change in the temp config (the defaults: as in ``python -m bench``)."""

    admin_port: int = 0  # 0: admin_listen = "" (no admin listener)
    reuse_port: bool = False  # [server] reuse_port: instances sharing one port
    redis_url: str = ""  # "": [state] on sqlite; else backend = "redis" at this URL
    extra_toml: str = ""  # appended to the config (bench_x402: [x402] and [pricing])


def write_aroutd_files(
    directory: Path,
    *,
    port: int,
    upstream_port: int,
    api_key: str,
    max_connections: int,
    options: ConfigOptions | None = None,
) -> AroutdFiles:
    """Config, key table and JWT secret for one aroutd instance in ``directory``."""
    options = options or ConfigOptions()
    directory.mkdir(parents=True, exist_ok=True)
    public_url = f"http://127.0.0.1:{port}"
    secret = directory / "jwt.secret"
    if not secret.exists():
        secret.write_bytes(secrets.token_hex(32).encode())
        secret.chmod(0o600)
    keys = directory / "keys.toml"
    if not keys.exists():
        write_keytable(keys, api_key)
    config = directory / "aroutd.toml"
    config.write_text(_config_text(port, upstream_port, max_connections, options))
    if not options.redis_url:  # the wallet's balance is in the sqlite store
        _grant_wallet(directory / "state" / "aroutd.db")
    return AroutdFiles(
        config=config, keys=keys, jwt_secret=secret, public_url=public_url, api_key=api_key
    )


def _config_text(port: int, upstream_port: int, max_connections: int, opt: ConfigOptions) -> str:
    admin = f"127.0.0.1:{opt.admin_port}" if opt.admin_port else ""
    reuse = "reuse_port = true\n" if opt.reuse_port else ""
    redis = f'backend = "redis"\nredis_url = "{opt.redis_url}"\n' if opt.redis_url else ""
    return (
        "[server]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        f'admin_listen = "{admin}"\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
        f"max_connections = {max_connections}\n"
        "idle_timeout_s = 300\n"
        f"{reuse}"
        "\n[keys]\n"
        'file = "keys.toml"\n'
        "\n[state]\n"
        'path = "state/aroutd.db"\n'
        f"{redis}"
        "\n[wallet]\n"
        'jwt_secret_file = "jwt.secret"\n'
        "\n[upstreams.mock]\n"
        f'url = "http://127.0.0.1:{upstream_port}"\n'
        'auth_header = "Authorization"\n'
        'auth_value = "Bearer upstream-secret"\n'
        "\n[[routes]]\n"
        'prefix = "/v1/"\n'
        'upstream = "mock"\n'
        'provider = "openai"\n'
        f"{opt.extra_toml}"
    )


def _grant_wallet(db: Path) -> None:
    """The bench wallet has a balance to spend (SPEC §9: without one it gets 402). The
    credit has a fixed id, so doing this again adds nothing."""
    from aroutd.store.base import Transaction
    from aroutd.store.sqlite import SqliteStore

    store = SqliteStore.open(db)
    try:
        store.credit(
            Transaction(
                id="txn_bench_grant",
                account=WALLET_ACCOUNT,
                type="credit",
                amount=1_000_000.0,
                description="bench grant",
                created_at=datetime.now(UTC),
            )
        )
    finally:
        store.close()


def wallet_jwt(secret_file: Path, public_url: str, *, ttl_s: int = 3600) -> str:
    """An HS256 wallet JWT as aroutd mints it (SPEC §8): kid = sha256(secret)[:16]."""
    import jwt

    secret = secret_file.read_bytes()
    now = int(time.time())
    claims = {
        "iss": public_url,
        "aud": "aroutd",
        "sub": WALLET_ACCOUNT,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    kid = hashlib.sha256(secret).hexdigest()[:16]
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
