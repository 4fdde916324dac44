"""`aroutd demo`: the quick start in one process, from a checkout or an installed package.

The config is the one shipped inside the package, ``aroutd/demo_config/demo.toml``, read
through importlib.resources so that a wheel works as well as a checkout. Its relative
paths (key table, state database, JWT secret) are taken against the demo's folder, never
against site-packages: ``--dir``, else ``$XDG_STATE_HOME/aroutd-demo``, else
``~/.local/state/aroutd-demo`` (``scripts/demo`` passes ``--dir config``). ``--config FILE``
runs your own config instead, its paths relative to it as for ``aroutd serve``.

On start it writes the key table with a fresh demo key (printed once, stored only as its
sha256), starts the bundled mock upstream where the config's loopback upstreams point (or
at ``--mock-listen``, pointing them there), then serves the daemon with its admin listener
until Ctrl-C. Port 0 in ``--listen``, ``--admin-listen`` or ``--mock-listen`` picks a free
port; the banner prints the ones bound. Nothing reaches a real provider.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from importlib.resources import files
from importlib.resources.abc import Traversable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from aroutd.config.parse import Config, parse_config
from aroutd.errors import ConfigError
from aroutd.keytable.keys import keys_new_output
from aroutd.mock import server as mock_upstream
from aroutd.shell.daemon import Bound, serve
from aroutd.shell.files import load_config

__all__ = ["DemoOptions", "default_state_dir", "packaged_config", "run_demo"]

STATE_DIR_NAME = "aroutd-demo"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEMO_TABLE_HEADER = """\
# Written by `aroutd demo` on every start; the key itself is printed, never stored.
[tenants.demo]

"""

HELLO_CHAT = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'

_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What ``aroutd demo`` was asked for; None everywhere means the packaged defaults."""

    config: Path | None = None  # your own config; None: the packaged one, anchored in state_dir
    state_dir: Path | None = None  # None: default_state_dir()
    listen: tuple[str, int] | None = None  # replaces [server] listen (and public_url)
    admin_listen: tuple[str, int] | None = None  # replaces [server] admin_listen
    mock_listen: tuple[str, int] | None = None  # the mock's address; loopback upstreams follow


class _CannotListen(Exception):
    """A listener of the demo could not be opened: its port is in use, most often."""


def default_state_dir(environ: Mapping[str, str], home: Path) -> Path:
    """``$XDG_STATE_HOME/aroutd-demo``, else ``~/.local/state/aroutd-demo``.

    The XDG Base Directory spec says a relative ``$XDG_STATE_HOME`` is invalid and must be
    ignored, as an empty one is.
    """
    xdg = environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else home / ".local" / "state"
    return base / STATE_DIR_NAME


def packaged_config() -> Traversable:
    """The demo config shipped as package data (``[tool.setuptools.package-data]``)."""
    return files("aroutd") / "demo_config" / "demo.toml"


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _load(options: DemoOptions) -> tuple[Config, str]:
    """The config, and where it came from (for the banner)."""
    if options.config is not None:
        return load_config(options.config), str(options.config)
    folder = options.state_dir or default_state_dir(os.environ, Path.home())
    source = packaged_config()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError([f"{source}: cannot read the packaged demo config ({why})"]) from None
    # anchored in the demo's folder: the relative paths must not point into site-packages
    path = folder / "demo.toml"
    cfg = parse_config(
        text, path=path, cwd=Path.cwd(), environ=os.environ, read_file=Path.read_bytes
    )
    return cfg, f"{source} (the packaged one)"


def _with_listeners(cfg: Config, options: DemoOptions) -> Config:
    server = cfg.server
    if options.listen is not None:
        host, port = options.listen
        public = f"http://{_fmt(host, port)}" if port else server.public_url
        server = replace(server, listen=(options.listen,), public_url=public)
    if options.admin_listen is not None:
        server = replace(server, admin_listen=options.admin_listen)
    return replace(cfg, server=server)


def _entry_only(entry: str) -> str:
    """A ``keys new`` entry without the tenant section it may start with."""
    return entry[entry.index("# made by") :]


def _write_keytable(path: Path, entry: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(DEMO_TABLE_HEADER + entry + "\n", encoding="utf-8")


async def _start(
    nursery: trio.Nursery, what: str, fn: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """``nursery.start(fn, *args)``, an OSError said as which listener failed."""
    try:
        return await nursery.start(fn, *args)
    except* OSError as group:
        why = "; ".join(str(exc) for exc in _leaves(group))
        raise _CannotListen(f"aroutd demo: cannot listen for {what} ({why})") from None


async def _start_mocks(
    cfg: Config, at: tuple[str, int] | None, nursery: trio.Nursery
) -> tuple[Config, list[str]]:
    """Start the mock upstream; the config that points at it, and the URLs it listens on."""
    local = {n: u for n, u in cfg.upstreams.items() if u.host in LOOPBACK_HOSTS}
    if at is None:
        places = sorted({(u.host, u.port) for u in local.values()})
        for host, port in places:
            where = f"the mock upstream on {_fmt(host, port)}"
            await _start(nursery, where, mock_upstream.serve, host, port)
        return cfg, [f"http://{_fmt(host, port)}" for host, port in places]
    host, port = at
    what = f"the mock upstream on {_fmt(host, port)}"
    bound: int = await _start(nursery, what, mock_upstream.serve, host, port)
    where = _fmt(host, bound)
    moved = {
        n: replace(u, url=f"http://{where}{u.base_path}", scheme="http", host=host, port=bound)
        for n, u in local.items()
    }
    return replace(cfg, upstreams={**cfg.upstreams, **moved}), [f"http://{where}"]


def _banner(cfg: Config, source: str, bound: Bound, mocks: list[str], key: str, mgmt: str) -> str:
    host, port = bound.addresses[0]
    public = urlsplit(cfg.server.public_url)
    base = cfg.server.public_url if public.port == port else f"http://{_fmt(host, port)}"
    admin = f"http://{_fmt(*bound.admin[0])}" if bound.admin else None
    python = sys.executable if find_spec("openai") else "python3"  # that one needs the openai SDK
    lines = [
        "",
        f"aroutd demo is running on {base}",
        f"  mock upstream:  {', '.join(mocks) or 'none (no loopback upstream in the config)'}",
        f"  admin listener: {admin} (/healthz, /metrics)" if admin else "  admin listener: off",
        f"  config:         {source}",
        f"  key table:      {cfg.keys.file}",
        f"  state:          {cfg.state.path}",
        "",
        "Your demo API key (shown once):",
        "",
        f"    {key}",
        "",
        "Try it:",
        "",
        f"    curl -s {base}/v1/chat/completions \\",
        f'      -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\',
        "      -d '" + HELLO_CHAT + "'",
        "",
    ]
    if admin:
        lines += [f"    curl -s {admin}/healthz", f"    curl -s {admin}/metrics", ""]
    lines += [
        f"    {python} -c 'from openai import OpenAI",
        f'c = OpenAI(base_url="{base}/v1", api_key="{key}")',
        'print(c.chat.completions.create(model="gpt-4o-mini",',
        '      messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)',
        """print(c.responses.create(model="gpt-4o-mini", input="Hello").output_text)'""",
        "",
        "Your demo management key (shown once) makes narrower keys over the management API:",
        "",
        f"    {mgmt}",
        "",
        f"    curl -s {base}/api/v1/keys \\",
        f'      -H "Authorization: Bearer {mgmt}" -H "Content-Type: application/json" \\',
        """      -d '{"name": "ci", "allowed_models": ["openai/gpt-4o-mini"], "limit": 5}'""",
        "",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


async def _demo(options: DemoOptions) -> None:
    loaded, source = _load(options)
    cfg = _with_listeners(loaded, options)
    key, entry = keys_new_output(tenant="demo", key_type="api", key_id="demo")
    mgmt, mgmt_entry = keys_new_output(tenant="demo", key_type="management", key_id="demo-admin")
    _write_keytable(cfg.keys.file, entry + "\n" + _entry_only(mgmt_entry))
    async with trio.open_nursery() as nursery:
        cfg, mocks = await _start_mocks(cfg, options.mock_listen, nursery)
        places = [*cfg.server.listen, *filter(None, [cfg.server.admin_listen])]
        what = "aroutd on " + " and ".join(_fmt(*place) for place in places)
        bound: Bound = await _start(nursery, what, _serve_then_stop, cfg, nursery.cancel_scope)
        print(_banner(cfg, source, bound, mocks, key, mgmt), flush=True)


async def _serve_then_stop(
    cfg: Config, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Bound]
) -> None:
    """serve() returns once SIGINT/SIGTERM has drained it; then the mock stops too."""
    try:
        await serve(cfg, task_status=task_status)
    finally:
        scope.cancel()


def _leaves(group: BaseExceptionGroup[_E]) -> list[_E]:
    out: list[_E] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def run_demo(options: DemoOptions) -> int:
    """Serve the demo until SIGINT/SIGTERM: 0, or 1 with what went wrong on stderr."""
    problems: list[str] = []
    try:
        trio.run(_demo, options)
    except* ConfigError as group:
        problems += [line for exc in _leaves(group) for line in exc.problems]
    except* _CannotListen as group:
        problems += [str(exc) for exc in _leaves(group)]
        problems.append(
            "aroutd demo: another demo running? --listen, --admin-listen and --mock-listen"
            " move it (port 0 picks a free one)"
        )
    except* OSError as group:  # a folder that cannot be written, most often
        problems += [f"aroutd demo: {exc}" for exc in _leaves(group)]
    except* KeyboardInterrupt:
        pass
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0
