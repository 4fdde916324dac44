"""Every file the daemon reads or writes at start-up and reload: config, key table, JWT secrets.

The core parses text it is given (:func:`~aroutd.config.parse.parse_config`,
:func:`~aroutd.keytable.table.parse_keytable`); this module is where that text
comes from. Failures are :class:`~aroutd.errors.ConfigError` naming the file,
never its content (a secret file's bytes stay secret).

The JWT secret is created when missing: 32 random bytes written to a temporary
file, fsync'd and hard-linked into place (mode 0600, folder 0700), so a crash
never leaves a short secret and two instances starting at once agree on one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from aroutd.auth.walletjwt import MIN_SECRET_BYTES, WalletTokens
from aroutd.config.parse import Config, parse_config
from aroutd.errors import ConfigError
from aroutd.keytable.table import KeyTable, parse_keytable

__all__ = [
    "check_paths",
    "load_config",
    "load_keytable",
    "load_or_create_secret",
    "read_secret",
    "shown",
    "state_folder_problems",
    "wallet_tokens",
]


def shown(path: Path) -> Path:
    """How messages name a file: relative to the working directory when it is below it,
    absolute otherwise, the same for the config, the key table and the secrets."""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(Path.cwd())
    except ValueError:
        return full


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        # no ":LINE": nothing in the file was read
        raise ConfigError([f"{shown(path)}: cannot read the {what}: {reason}"]) from None


def load_config(path: Path) -> Config:
    """Read and parse the config file at ``path`` with ``os.environ`` and the disk."""
    text = _read_text(path, "config file")
    return parse_config(
        text, path=shown(path), cwd=Path.cwd(), environ=os.environ, read_file=Path.read_bytes
    )


def load_keytable(path: Path) -> KeyTable:
    """Read and parse the key table at ``path``."""
    return parse_keytable(_read_text(path, "key table"), path=shown(path))


def check_paths(config_path: Path) -> list[str]:
    """Every problem in the config file and its key table, as "FILE:LINE: message", and
    state folders the daemon could not write (under systemd: ProtectSystem=strict)."""
    try:
        config = load_config(config_path)
        load_keytable(config.keys.file)
    except ConfigError as exc:
        return list(exc.problems)
    return state_folder_problems(config)


def state_folder_problems(config: Config) -> list[str]:
    """The folders of the state store and the JWT secret must be writable, or creatable."""
    wanted = {config.state.path.parent: "[state] path"}
    if config.wallet.enabled:
        wanted.setdefault(config.wallet.jwt_secret_file.parent, "[wallet] jwt_secret_file")
    problems = []
    for folder, setting in wanted.items():
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problems.append(
                f"{shown(folder)}: the state folder cannot be written ({setting}; under systemd"
                " leave it unset to use $STATE_DIRECTORY)"
            )
    return problems


def read_secret(path: Path) -> bytes:
    """The bytes of an existing secret file; ConfigError when unreadable or under 32 bytes."""
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{shown(path)}: cannot read the JWT secret ({exc.strerror})"]) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            [
                f"{shown(path)}: the JWT secret must be at least {MIN_SECRET_BYTES} bytes,"
                f" not {len(secret)}"
            ]
        )
    return secret


def load_or_create_secret(path: Path) -> bytes:
    """The secret in ``path``, created first (32 random bytes, 0600, folder 0700) if missing."""
    if not path.exists():
        try:
            _create_secret(path)
        except OSError as exc:
            message = f"{shown(path)}: cannot create the JWT secret ({exc.strerror})"
            raise ConfigError([message]) from None
    return read_secret(path)


def _create_secret(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(MIN_SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        # FileExistsError: another process created it first; use theirs.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def wallet_tokens(cfg: Config) -> WalletTokens | None:
    """The wallet JWT issuer of ``[wallet]`` (None when disabled), its secret files read
    (the current one created when missing); ConfigError on failure."""
    wallet = cfg.wallet
    if not wallet.enabled:
        return None
    return WalletTokens(
        secret=load_or_create_secret(wallet.jwt_secret_file),
        previous=[read_secret(p) for p in wallet.jwt_previous_secret_files],
        issuer=cfg.server.public_url,
        ttl_s=wallet.jwt_ttl_s,
    )
