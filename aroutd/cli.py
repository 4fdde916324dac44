"""The command line (SPEC §1): serve, check, keys new|hash|list|disable|enable|delete, demo,
mock-upstream, state migrate (sqlite to Redis, §14); wallets credit|show (wallet balances,
README); and mock-facilitator (a fake x402 facilitator, for scripts/x402-demo and tests).

Exit codes: 0 success, 1 invalid config / key table or startup failure, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]

DEFAULT_CONFIG = "config/aroutd.toml"
_CONFIG_HELP = (
    "config file (default $AROUTD_CONFIG, $CONFIGURATION_DIRECTORY/aroutd.toml"
    f" or {DEFAULT_CONFIG})"
)


def _config_path(arg: str | None) -> Path:
    """--config, else $AROUTD_CONFIG, else aroutd.toml in systemd's
    $CONFIGURATION_DIRECTORY (ConfigurationDirectory=), else config/aroutd.toml."""
    if arg or os.environ.get("AROUTD_CONFIG"):
        return Path(arg or os.environ["AROUTD_CONFIG"])
    configuration = os.environ.get("CONFIGURATION_DIRECTORY", "").split(":")[0]
    return Path(configuration) / "aroutd.toml" if configuration else Path(DEFAULT_CONFIG)


def _tenant_known(config_path: Path, tenant: str) -> bool | None:
    """Whether the key table of the config has ``tenant``; None when it cannot be read."""
    from aroutd.errors import ConfigError
    from aroutd.shell.files import load_config, load_keytable

    try:
        return tenant in load_keytable(load_config(config_path).keys.file).tenants
    except ConfigError:
        return None


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` for the demo's listeners; else a usage error."""
    from aroutd.errors import BadRequest
    from aroutd.mock.server import parse_listen

    try:
        return parse_listen(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aroutd", description="authenticating edge for LLM APIs")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", help=_CONFIG_HELP)

    check = sub.add_parser("check", help="validate the config and key table")
    check.add_argument("--config", help=_CONFIG_HELP)

    keys = sub.add_parser("keys", help="make and hash keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a fresh key and its [[keys]] entry")
    new.add_argument("--tenant", required=True)
    new.add_argument("--type", choices=["api", "management"], default="api")
    new.add_argument("--id", dest="key_id")
    new.add_argument(
        "--config", help="config whose key table is checked for the tenant (default as serve's)"
    )
    keys_sub.add_parser("hash", help="read a key on stdin, print its sha256 hex")
    listing = keys_sub.add_parser("list", help="the keys created through the management API")
    listing.add_argument("--tenant")
    listing.add_argument("--config", help=_CONFIG_HELP)
    for verb in ("disable", "enable", "delete"):
        change = keys_sub.add_parser(verb, help=f"{verb} a key created through the API")
        change.add_argument("hash", metavar="HASH")
        change.add_argument("--config", help=_CONFIG_HELP)

    wallets = sub.add_parser("wallets", help="wallet balances: credit a wallet, show one")
    wallets_sub = wallets.add_subparsers(dest="wallets_command", required=True)
    credit = wallets_sub.add_parser("credit", help="add USD to a wallet's balance")
    credit.add_argument("account", metavar="ACCOUNT", help="CAIP-10, e.g. eip155:8453:0xAbC…")
    credit.add_argument("usd", metavar="USD")
    credit.add_argument("--note", default="", help="the credit's description in its log")
    credit.add_argument("--config", help=_CONFIG_HELP)
    show = wallets_sub.add_parser("show", help="a wallet's balance and latest transactions")
    show.add_argument("account", metavar="ACCOUNT")
    show.add_argument("--config", help=_CONFIG_HELP)

    state = sub.add_parser("state", help="the state store: move it to Redis")
    state_sub = state.add_subparsers(dest="state_command", required=True)
    migrate = state_sub.add_parser(
        "migrate", help="copy the config's sqlite state into a Redis (idempotent)"
    )
    migrate.add_argument(
        "--to", required=True, metavar="URL", help="redis://, rediss:// or unix:// URL"
    )
    migrate.add_argument("--config", help=_CONFIG_HELP)

    demo = sub.add_parser("demo", help="the quick start: mock upstream + daemon + a fresh key")
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--dir",
        help="folder for the key table and state of the packaged demo config "
        "(default $XDG_STATE_HOME/aroutd-demo or ~/.local/state/aroutd-demo)",
    )
    where.add_argument("--config", help="your own config instead (paths relative to it)")
    for flag, default in (("listen", "8080"), ("admin-listen", "9901"), ("mock-listen", "9999")):
        demo.add_argument(
            f"--{flag}",
            type=_address,
            metavar="HOST:PORT",
            help=f"instead of the config's (127.0.0.1:{default}); port 0 picks a free one",
        )

    mock = sub.add_parser("mock-upstream", help="a fake OpenAI/Anthropic/Gemini upstream")
    mock.add_argument("--listen", default="127.0.0.1:9999")
    mock.add_argument("--delay-ms", type=float, default=0.0)
    mock.add_argument("--event-delay-ms", type=float, default=0.0)

    fac = sub.add_parser("mock-facilitator", help="a fake x402 facilitator (never on a chain)")
    fac.add_argument(
        "--listen",
        type=_address,
        default="127.0.0.1:9998",
        metavar="HOST:PORT",
        help="default 127.0.0.1:9998; port 0 picks a free one",
    )
    return p


def _stored_keys(args: argparse.Namespace) -> list[str]:
    """``keys list|disable|enable|delete``: the state store's keys (shell.keyadmin)."""
    from aroutd.shell.keyadmin import change_key, list_keys

    path = _config_path(args.config)
    if args.keys_command == "list":
        return list_keys(path, args.tenant)
    return [change_key(path, args.hash, args.keys_command)]


def _wallets(args: argparse.Namespace) -> list[str]:
    """``wallets credit|show`` (shell.walletadmin)."""
    from aroutd.shell.walletadmin import credit_wallet, show_wallet

    path = _config_path(args.config)
    if args.wallets_command == "credit":
        return credit_wallet(path, args.account, args.usd, args.note)
    return show_wallet(path, args.account)


def _state(args: argparse.Namespace) -> list[str]:
    """``state migrate`` (shell.migrate)."""
    from aroutd.shell.migrate import migrate_state

    return migrate_state(_config_path(args.config), args.to)


def _store_command(args: argparse.Namespace) -> int:
    """A command on the state store: its lines, or what went wrong on stderr and 1."""
    from aroutd.errors import ConfigError, HTTPError
    from aroutd.shell.keyadmin import KeyCommandError

    name = f"aroutd {args.command} {getattr(args, args.command + '_command')}"
    try:
        commands = {"wallets": _wallets, "state": _state, "keys": _stored_keys}
        lines = commands[args.command](args)
    except KeyCommandError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    except HTTPError as exc:  # bad input (400) or the store failed (503): never a traceback
        print(f"{name}: {exc.message}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from aroutd.shell.daemon import run

        return run(_config_path(args.config))
    if args.command == "check":
        from aroutd.shell.files import check_paths

        path = _config_path(args.config)
        problems = check_paths(path)
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"{path}: ok")
        return 1 if problems else 0
    if args.command in ("wallets", "state") or (
        args.command == "keys" and args.keys_command not in ("new", "hash")
    ):
        return _store_command(args)
    if args.command == "keys":
        from aroutd.keytable.keys import keys_hash_output, keys_new_output

        if args.keys_command == "new":
            try:
                key, entry = keys_new_output(
                    tenant=args.tenant,
                    key_type=args.type,
                    key_id=args.key_id,
                    tenant_known=_tenant_known(_config_path(args.config), args.tenant),
                )
            except ValueError as exc:
                print(f"aroutd keys new: {exc}", file=sys.stderr)
                return 2
            print(key)
            print()
            print(entry)
            return 0
        try:
            print(keys_hash_output(sys.stdin.read()))
        except ValueError as exc:
            print(f"aroutd keys hash: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "demo":
        from aroutd.demo import DemoOptions, run_demo

        options = DemoOptions(
            config=Path(args.config) if args.config else None,
            state_dir=Path(args.dir) if args.dir else None,
            listen=args.listen,
            admin_listen=args.admin_listen,
            mock_listen=args.mock_listen,
        )
        return run_demo(options)
    if args.command == "mock-upstream":
        from aroutd.mock.server import main as mock_main

        mock_args = ["--listen", args.listen, "--delay-ms", str(args.delay_ms)]
        mock_args += ["--event-delay-ms", str(args.event_delay_ms)]
        return mock_main(mock_args)
    if args.command == "mock-facilitator":
        from aroutd.mock.facilitator import main as facilitator_main

        return facilitator_main(*args.listen)
    return 2
