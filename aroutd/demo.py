"""`aroutd demo`: the quick start in one process.

Starts the bundled mock upstream where the demo config's upstream points, writes
a key table with a fresh demo key (printed once, stored only as its sha256),
and serves the daemon in front of it until Ctrl-C. Nothing reaches a real
provider.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import trio

from aroutd.config.parse import Config
from aroutd.errors import ConfigError
from aroutd.keytable.keys import keys_new_output
from aroutd.mock import server as mock_upstream
from aroutd.shell.daemon import Bound, serve
from aroutd.shell.files import load_config

__all__ = ["run_demo"]

DEMO_TABLE_HEADER = """\
# Written by `aroutd demo` on every start; the key itself is printed, never stored.
[tenants.demo]

"""


def _banner(base: str, key: str) -> str:
    return f"""
aroutd demo is running on {base} in front of the bundled mock upstream.

Your demo API key (shown once):

    {key}

Try it:

    curl -s {base}/v1/chat/completions \\
      -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
      -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

    .venv/bin/python -c 'from openai import OpenAI
c = OpenAI(base_url="{base}/v1", api_key="{key}")
print(c.chat.completions.create(model="gpt-4o-mini",
      messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

Ctrl-C stops it.
"""


async def _demo(config_path: Path) -> None:
    cfg = load_config(config_path)
    key, entry = keys_new_output(tenant="demo", key_type="api", key_id="demo")
    cfg.keys.file.write_text(DEMO_TABLE_HEADER + entry + "\n")
    async with trio.open_nursery() as nursery:
        for up in cfg.upstreams.values():
            if up.host in ("127.0.0.1", "localhost"):
                await nursery.start(mock_upstream.serve, up.host, up.port)
        bound: Bound = await nursery.start(_serve_then_stop, cfg, nursery.cancel_scope)
        host, port = bound.addresses[0]
        public = urlsplit(cfg.server.public_url)
        base = cfg.server.public_url.rstrip("/") if public.port == port else f"http://{host}:{port}"
        print(_banner(base, key), flush=True)


async def _serve_then_stop(
    cfg: Config, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Bound]
) -> None:
    """serve() returns once SIGINT/SIGTERM has drained it; then the mock stops too."""
    try:
        await serve(cfg, task_status=task_status)
    finally:
        scope.cancel()


def run_demo(config_path: Path) -> int:
    try:
        trio.run(_demo, config_path)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
