"""The daemon's shape: listeners, nurseries, signals (SPEC §11).

The handler nursery sits outside the accept nursery (as in hypercorn's
trio/run.py): SIGTERM cancels only the accepting, then in-flight requests get
``drain_timeout_s`` before their scope's deadline cancels what is left, and
the process exits 0.

SIGHUP re-reads the key table in a worker thread (pure-Python parsing lets the
event loop keep its turn under the GIL), then swaps it in with one assignment;
a table that does not parse leaves the old one serving and logs every
problem with file:line.
"""

from __future__ import annotations

import gc
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from aroutd.config.parse import Config
from aroutd.errors import BadRequest, ConfigError
from aroutd.forwarding import peer_is_trusted
from aroutd.routing import known_providers
from aroutd.shell import logsink
from aroutd.shell.admin import handle_admin
from aroutd.shell.facilitator import Facilitator, refresh_fee_payers
from aroutd.shell.files import load_config, load_keytable, wallet_tokens
from aroutd.shell.handler import ConnInfo, handle_request
from aroutd.shell.keysync import follow_key_changes, load_store_keys
from aroutd.shell.payments import Payments, recover_payments
from aroutd.shell.runtime import Runtime
from aroutd.shell.sdnotify import listen_sockets, notify, watchdog_interval_s
from aroutd.shell.server import Handler, read_proxy_header, serve_connection
from aroutd.shell.shared import start_shared, use_redis_counters
from aroutd.shell.stores import open_store
from aroutd.shell.usagesync import final_commit, load_usage, sync_usage

__all__ = ["Bound", "reload_keys", "run", "serve"]

ACCEPT_ERROR_PAUSE_S = 0.1  # EMFILE and friends: breathe instead of spinning
ADMIN_MAX_CONNECTIONS = 64  # the admin listener's own limit (operators and scrapers)
RELOAD_SWITCH_INTERVAL_S = 0.0005  # the GIL switch interval while a reload parses
MSG_NOTHING_TO_LISTEN_ON = (
    "server.listen: empty, and systemd passed no sockets (LISTEN_FDS): nothing to serve on"
)


@dataclass(frozen=True, slots=True)
class Bound:
    """Where the daemon listens, reported through task_status once it serves."""

    addresses: tuple[tuple[str, int], ...]
    admin: tuple[tuple[str, int], ...] = ()


async def _open_listeners(
    cfg: Config, addresses: tuple[tuple[str, int], ...]
) -> list[trio.SocketListener]:
    listeners: list[trio.SocketListener] = []
    for host, port in addresses:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if cfg.server.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind((host, port))
        sock.listen(min(4096, socket.SOMAXCONN))
        listeners.append(trio.SocketListener(sock))
    return listeners


async def _accept_loop(
    rt: Runtime,
    listener: trio.SocketListener,
    handlers: trio.Nursery,
    handle: Handler = handle_request,
    tls: ssl.SSLContext | None = None,
) -> None:
    # Admin connections have a small limit of their own: /healthz must answer exactly
    # when the API's max_connections is reached, and they are not the API's gauge.
    api = handle is handle_request
    limit = rt.config.server.max_connections if api else ADMIN_MAX_CONNECTIONS
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            logsink.event("accept_error", errno=exc.errno)
            await trio.sleep(ACCEPT_ERROR_PAUSE_S)
            continue
        if (rt.open_connections if api else rt.admin_connections) >= limit:
            # SPEC §2 max_connections: beyond it, close at accept
            await trio.aclose_forcefully(stream)
            continue
        try:
            peer = stream.socket.getpeername()
        except OSError:
            await trio.aclose_forcefully(stream)
            continue
        if api:
            rt.open_connections += 1
        else:
            rt.admin_connections += 1
        handlers.start_soon(_serve_one, rt, stream, str(peer[0]), handle, tls)


async def _serve_one(
    rt: Runtime,
    stream: trio.SocketStream,
    peer_ip: str,
    handle: Handler,
    tls: ssl.SSLContext | None,
) -> None:
    try:
        # API listeners only: the PROXY header comes first, before TLS (SPEC §2)
        if handle is handle_request and rt.config.server.proxy_protocol:
            proxied = await _proxied_peer(rt, stream, peer_ip)
            if proxied is None:
                await trio.aclose_forcefully(stream)
                return
            peer_ip = proxied
        client: trio.abc.Stream = stream
        if tls is not None:
            # the handshake runs on first use, inside the connection's header timeout
            client = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
        proto = "http" if tls is None else "https"
        await serve_connection(rt, client, ConnInfo(peer_ip=peer_ip, proto=proto), handle)
    finally:
        if handle is handle_request:
            rt.open_connections -= 1
        else:
            rt.admin_connections -= 1


async def _proxied_peer(rt: Runtime, stream: trio.SocketStream, peer_ip: str) -> str | None:
    """The client address after the PROXY header; None (close) when it is missing or bad.

    The named address is believed only from trusted_proxies (SPEC §12);
    from anyone else the header is consumed and the TCP peer is kept.
    """
    with trio.move_on_after(rt.config.server.header_timeout_s):
        try:
            header = await read_proxy_header(stream.socket)
        except (BadRequest, OSError):
            return None
        if header.source is None or not peer_is_trusted(peer_ip, rt.config.server.trusted_proxies):
            return peer_ip
        return header.source
    return None


async def reload_keys(rt: Runtime) -> bool:
    """SIGHUP: parse off the event loop, swap atomically, keep the old table on error."""
    notify("RELOADING=1", "STATUS=reloading the key table")
    path = rt.config.keys.file
    started = trio.current_time()
    # While the parser thread holds the GIL, the event loop waits up to one
    # switch interval (5 ms) at every hand-off; a request makes several, so a
    # shorter interval during the reload keeps latency low (measured in tests).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(RELOAD_SWITCH_INTERVAL_S)
    # The parser makes millions of objects and no cycles; automatic collections
    # triggered by them would walk the growing heap while holding the GIL.
    gc.disable()
    try:
        # abandon_on_cancel: a SIGTERM during a reload must not wait for the parser
        table = await trio.to_thread.run_sync(load_keytable, path, abandon_on_cancel=True)
    except ConfigError as exc:
        rt.metrics.reloads["error"] += 1
        logsink.event("reload", result="error", problems=list(exc.problems))
        notify("READY=1", "STATUS=serving (reload failed, old key table kept)")
        return False
    finally:
        sys.setswitchinterval(interval)
        gc.enable()
    old, rt.keytable = rt.keytable, table
    rt.log_conflicts()
    await _reload_pricing(rt)
    gc.freeze()  # no collect() here: walking a fresh million-key table would pause serving
    rt.metrics.reloads["ok"] += 1
    logsink.event(
        "reload",
        result="ok",
        keys=len(table.by_digest),
        seconds=round(trio.current_time() - started, 3),
    )
    notify("READY=1", f"STATUS=serving {len(table.by_digest)} keys")
    # Freed in a worker thread, a batch at a time: dropping a million rows here
    # at once would stall the event loop for a quarter second.
    await trio.to_thread.run_sync(old.dispose, abandon_on_cancel=True)
    return True


async def _reload_pricing(rt: Runtime) -> None:
    """SIGHUP re-reads ``[pricing]`` too (SPEC §11): from the config file, which must
    parse whole; on any problem the old prices stay, and the problems are logged. Only
    the prices (and the providers they name) change: other settings need a restart."""
    try:
        cfg = await trio.to_thread.run_sync(load_config, rt.config.path, abandon_on_cancel=True)
    except ConfigError as exc:
        logsink.event("pricing_reload", result="error", problems=list(exc.problems))
        return
    if cfg.pricing != rt.config.pricing:
        rt.config = replace(rt.config, pricing=cfg.pricing)
        rt.providers = known_providers(rt.config)
    logsink.event("pricing_reload", result="ok", models=len(cfg.pricing))


Signals = AsyncIterator[int]  # what trio.open_signal_receiver yields
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
SIGNAL_FLUSH_S = 0.01  # at exit: long enough to take the signals already pending


async def _signals(rt: Runtime, signals: Signals, accept_scope: trio.CancelScope) -> None:
    """SIGHUP: reload (one at a time; one that comes during a reload runs another after
    it, so the newest file is always read). SIGTERM / SIGINT: stop accepting."""
    state = {"running": False, "again": False}

    async def reload_task() -> None:
        try:
            while True:
                state["again"] = False
                await reload_keys(rt)
                if not state["again"]:
                    return
        finally:
            state["running"] = False

    async with trio.open_nursery() as nursery:
        async for signum in signals:
            if signum == signal.SIGHUP:
                if state["running"]:
                    state["again"] = True
                else:
                    state["running"] = True
                    nursery.start_soon(reload_task)
            else:
                logsink.event("shutdown", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                accept_scope.cancel()
                return


async def serve(
    cfg: Config, *, task_status: trio.TaskStatus[Bound] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return.

    Listeners, pooled upstream connections and the state store are closed on the
    way out however it ends, a cancellation included.
    """
    # From here to the end of the drain our handlers own the signals: a SIGHUP while the
    # table loads or while draining (systemctl reload) waits in the receiver instead of
    # killing the process with the default action.
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
        await _serve_with_signals(cfg, signals, task_status)
        # trio redelivers what is still pending when the receiver closes, and a SIGHUP's
        # default action would end us now with a signal instead of exit 0: take them.
        with trio.move_on_after(SIGNAL_FLUSH_S):
            async for signum in signals:
                logsink.event("signal_ignored", signal=signal.Signals(signum).name)
    logsink.event("stopped")


async def _serve_with_signals(
    cfg: Config, signals: Signals, task_status: trio.TaskStatus[Bound]
) -> None:
    keytable = await trio.to_thread.run_sync(load_keytable, cfg.keys.file)
    store = open_store(cfg)
    rt: Runtime | None = None
    opened: list[trio.SocketListener] = []
    try:
        tls = _tls_context(cfg)
        rt = Runtime.build(cfg, keytable, store, wallet_tokens(cfg))
        if cfg.x402.enabled:
            rt.payments = Payments(cfg, Facilitator(cfg.x402))
        if cfg.state.backend == "redis":
            use_redis_counters(rt)  # rate limits and failed auth counted with the others
        await load_store_keys(rt)
        await load_usage(rt)
        if rt.payments is not None:
            await recover_payments(rt)  # settled before a crash, not yet credited
        _freeze_heap()  # before serving: a collect() now pauses nobody
        # socket activation (SPEC §2): systemd's sockets replace [server] listen
        activated = listen_sockets()
        if activated:
            api = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in activated]
        elif not cfg.server.listen:  # valid only for a unit whose sockets systemd passes
            raise ConfigError([MSG_NOTHING_TO_LISTEN_ON])
        else:
            api = await _open_listeners(cfg, cfg.server.listen)
        opened += api
        admin_at = cfg.server.admin_listen
        admin = await _open_listeners(cfg, (admin_at,)) if admin_at else []
        opened += admin
        async with trio.open_nursery() as background:
            # usage commits span the drain: requests that finish in it are charged
            background.start_soon(sync_usage, rt)
            start_shared(rt, background)
            if rt.payments is not None:
                solana = any(n.startswith("solana:") for n in cfg.x402.networks)
                fac, payers = rt.payments.facilitator, rt.payments.fee_payers
                background.start_soon(refresh_fee_payers, fac, payers, solana)
            await _serve_listeners(rt, api, admin, tls, signals, task_status)
            background.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for listener in opened:
                await listener.aclose()
            if rt is not None:
                await final_commit(rt)
                await rt.aclose()
                if rt.payments is not None:
                    await rt.payments.facilitator.aclose()
        store.close()


async def _serve_listeners(
    rt: Runtime,
    api: list[trio.SocketListener],
    admin: list[trio.SocketListener],
    tls: ssl.SSLContext | None,
    signals: Signals,
    task_status: trio.TaskStatus[Bound],
) -> None:
    """Accept until a signal says stop; then stop accepting and drain the handlers."""
    bound = Bound(tuple(_sockname(ln) for ln in api), tuple(_sockname(ln) for ln in admin))
    keys = len(rt.keytable.by_digest)
    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as accepting:
            for listener in api:
                accepting.start_soon(_accept_loop, rt, listener, handlers, handle_request, tls)
            for listener in admin:
                accepting.start_soon(_accept_loop, rt, listener, handlers, handle_admin)
            accepting.start_soon(_signals, rt, signals, accepting.cancel_scope)
            accepting.start_soon(follow_key_changes, rt)
            ping_s = watchdog_interval_s()
            if ping_s is not None:
                accepting.start_soon(_watchdog, ping_s)
            logsink.event(
                "listening",
                addresses=[f"{_fmt(h)}:{p}" for h, p in bound.addresses],
                admin=[f"{_fmt(h)}:{p}" for h, p in bound.admin],
                keys=keys,
            )
            notify("READY=1", f"STATUS=serving {keys} keys")
            task_status.started(bound)
        for listener in [*api, *admin]:
            await listener.aclose()
        notify("STOPPING=1")
        rt.start_draining()
        drain_s = rt.config.server.drain_timeout_s
        handlers.cancel_scope.deadline = trio.current_time() + drain_s
        logsink.event("draining", connections=rt.open_connections, timeout_s=drain_s)


def _tls_context(cfg: Config) -> ssl.SSLContext | None:
    """TLS termination (SPEC §2 tls_cert / tls_key) for the API listeners; None without."""
    server = cfg.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(server.tls_cert, server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError([f"{cfg.path}: server.tls_cert / tls_key: cannot load ({why})"]) from None
    return ctx


async def _watchdog(interval_s: float) -> None:
    """WATCHDOG=1 while the event loop turns: a stuck loop lets systemd restart us."""
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval_s)


def _freeze_heap() -> None:
    """Move what is alive now (config, key table, modules) out of the cyclic GC's sight.

    These objects live until the next reload; without this every full
    collection walks all of them (seconds with a million keys) while requests
    wait. Garbage from an old table is still freed by reference counting.
    (On reload only gc.freeze() runs: collecting first would walk the new table.)
    """
    gc.collect()
    gc.freeze()


def _sockname(listener: trio.SocketListener) -> tuple[str, int]:
    name = listener.socket.getsockname()
    return str(name[0]), int(name[1])


def _fmt(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(config_path: Path) -> int:
    """`aroutd serve`: load, serve, drain; the exit code."""
    try:
        cfg = load_config(config_path)
        trio.run(serve, cfg)
    except ConfigError as exc:
        logsink.event("config_error", problems=list(exc.problems))
        return 1
    except OSError as exc:
        logsink.event("startup_error", error=f"{type(exc).__name__}: {exc.strerror}")
        return 1
    return 0
