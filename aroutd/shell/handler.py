"""One request, from its head to the last byte of its answer.

The order is the contract's (SPEC §4-§6), and each step is a pure function
from the core; this module only sequences them and does the I/O:

    head ─ built-in? ─ protected? ─ held back (429)? ─ credential ─ principal
         ─ endpoint kind ─ body (≤ max_body_bytes) ─ model ─ route + scope
         ─ upstream head ─ pooled upstream request ─ relay, chunk by chunk

While the answer is relayed, the client's side of the socket is watched: a
client that goes away cancels its upstream request at once (SPEC §6).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import h11
import trio

from aroutd.accesslog import AccessRecord
from aroutd.auth.signin import sign_in
from aroutd.credentials import extract_credential, redact_query_key, strip_query_key
from aroutd.errors import (
    BadGateway,
    BadRequest,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from aroutd.forwarding import (
    client_address,
    request_id_from,
    response_headers,
    upstream_request_headers,
)
from aroutd.policy import (
    Endpoint,
    authorize_endpoint,
    authorize_model,
    principal_for_wallet,
)
from aroutd.principal import Principal
from aroutd.routing import match_route, request_model, resolve, rewrite_body_model
from aroutd.shell import logsink
from aroutd.shell.connection import ClientConnection, ClientGone
from aroutd.shell.runtime import Runtime
from aroutd.shell.upstream import Abandoned, UpstreamBroken, UpstreamPool
from aroutd.shell.websocket import is_upgrade, relay_upgrade

__all__ = ["ConnInfo", "handle_request"]

PROTECTED_PREFIXES = (b"/v1/", b"/v1beta/", b"/api/v1/")
JSON_HEADERS = [(b"content-type", b"application/json")]
DISCARD_LIMIT_BYTES = 65536  # a refused request's body smaller than this is read so the
# connection can be kept; a larger one closes the connection instead


# Request ids need to be unique, not secret: a random per-process prefix and a
# counter (32 hex characters) cost no getrandom() syscall per request.
_RID_PREFIX = secrets.token_hex(8)
_rid_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_RID_PREFIX}{next(_rid_counter):016x}"


@dataclass(frozen=True, slots=True)
class ConnInfo:
    peer_ip: str
    proto: str  # "http" | "https": what the client used to reach us


class _Cut(Exception):
    """The response was started and cannot be finished: close the connection."""


async def handle_request(
    rt: Runtime, client: ClientConnection, req: h11.Request, info: ConnInfo
) -> bool:
    """Answer one request. Returns False when the connection must be closed."""
    started = time.perf_counter()
    rec = AccessRecord(time=time.time(), method=req.method.decode("ascii", "replace"))
    rec.path = redact_query_key(req.target)
    headers = list(req.headers)  # names lowercased by h11
    rid = request_id_from(headers) or _new_request_id()
    rec.request_id = rid
    rid_header = (b"x-request-id", rid.encode())
    keep = True
    try:
        await _dispatch(rt, client, req, headers, info, rid, rec)
    except HTTPError as err:
        rec.status, rec.error = err.status, err.message
        extra = [rid_header]
        keep = not (err.close or rt.draining.is_set()) and await _finish_body(rt, client)
        if not keep:
            extra.append((b"connection", b"close"))
        await client.send_error(err, extra)
    except _Cut:
        keep = False
    else:
        # answered without reading the body (e.g. /healthz): read what is left
        keep = await _finish_body(rt, client)
    finally:
        duration_s = time.perf_counter() - started
        rec.duration_ms = round(duration_s * 1000, 3)
        if rec.client == "":
            rec.client = info.peer_ip
        logsink.write(rec)
        rt.metrics.observe(
            status=rec.status,
            auth_method=rec.auth_method,
            duration_s=duration_s,
            upstream_s=None if rec.ttfb_ms is None else rec.ttfb_ms / 1000,
            # our own 401/429 messages are a closed set: safe as label values
            auth_failure=rec.error if rec.status in (401, 429) else None,
        )
    return keep and client.can_reuse()


async def _finish_body(rt: Runtime, client: ClientConnection) -> bool:
    """Read and drop the rest of a small unread body; False when the connection can't be reused."""
    if not client.body_pending():
        return True
    with trio.move_on_after(rt.config.server.body_timeout_s):
        await client.discard_body(DISCARD_LIMIT_BYTES)
    return not client.body_pending()


async def _dispatch(
    rt: Runtime,
    client: ClientConnection,
    req: h11.Request,
    headers: list[tuple[bytes, bytes]],
    info: ConnInfo,
    rid: str,
    rec: AccessRecord,
) -> None:
    cfg = rt.config
    raw_path, _, query = req.target.partition(b"?")
    if raw_path == b"/healthz":
        await _send_json(client, rt, rec, rid, 200, {"status": "ok"})
        return
    if raw_path == b"/v1/x402/auth":
        await _wallet_sign_in(rt, client, req, headers, rid, rec)
        return
    path = raw_path.decode("ascii", "replace")
    route = match_route(cfg.routes, path)
    builtin = _builtin_kind(raw_path)
    if route is None and builtin is None and not raw_path.startswith(PROTECTED_PREFIXES):
        raise NotFound("not found")

    client_ip, peer_trusted = _client_address(rt, info, headers)
    rec.client = client_ip
    upgrade = is_upgrade(req.method, headers)
    principal = _authenticate(rt, headers, query, client_ip, rec, websocket=upgrade)
    if builtin is not None:
        authorize_endpoint(principal, builtin)
        # The management API, /v1/key and /api/v1/balance come with the state
        # store's keys and usage; until then these paths are not served.
        raise NotFound("not found")
    authorize_endpoint(principal, "inference")
    if route is None:
        raise NotFound("not found")
    if upgrade:  # a WebSocket handshake (OpenAI Realtime): the model is the query's
        body = b""
        model = _query_model(query)
    else:
        body = await client.read_body(
            cfg.server.max_body_bytes, stall_timeout_s=cfg.server.body_timeout_s
        )
        rec.bytes_in = len(body)
        content_type = next((v for n, v in headers if n == b"content-type"), None)
        model = request_model(
            resolve(route, path, None, rt.providers).upstream_path, body, content_type=content_type
        )
    match = resolve(route, path, model, rt.providers)
    rec.provider, rec.model, rec.upstream = match.provider, match.canonical_model, match.upstream
    authorize_model(principal, match.provider, match.canonical_model)
    if match.forward_model is not None:
        body = rewrite_body_model(body, match.forward_model)

    pool = rt.pools[match.upstream]
    target = (pool.config.base_path + match.upstream_path).encode()
    stripped = strip_query_key(query)
    if stripped:
        target += b"?" + stripped
    has_body = not upgrade and (body or req.method not in (b"GET", b"HEAD"))
    up_headers = upstream_request_headers(
        headers,
        upstream=pool.config,
        principal=principal,
        client_addr=client_ip,
        peer_trusted=peer_trusted,
        peer_addr=info.peer_ip,
        proto=info.proto,
        request_id=rid,
        content_length=len(body) if has_body else None,
        websocket=upgrade,
    )
    if upgrade:
        rec.status = await relay_upgrade(client, pool, target, up_headers, rid)
    else:
        await _relay(rt, client, _Outbound(pool, req.method, target, up_headers, body), rid, rec)


def _query_model(query: bytes) -> str | None:
    values = [v for k, v in parse_qsl(query.decode("latin-1")) if k == "model"]
    if len(set(values)) > 1:
        raise BadRequest("duplicate model field")
    return values[0] if values and values[0] else None


def _builtin_kind(raw_path: bytes) -> Endpoint | None:
    """The endpoint kind of a built-in path under /v1 or /api/v1 (SPEC §2, §7)."""
    if raw_path == b"/api/v1/keys" or raw_path.startswith(b"/api/v1/keys/"):
        return "management"
    if raw_path in (b"/v1/key", b"/api/v1/key"):
        return "self"
    if raw_path == b"/api/v1/balance":
        return "balance"
    return None


def _client_address(
    rt: Runtime, info: ConnInfo, headers: list[tuple[bytes, bytes]]
) -> tuple[str, bool]:
    trusted = rt.config.server.trusted_proxies
    if not trusted:
        return info.peer_ip, False
    return client_address(info.peer_ip, headers, trusted)


def _authenticate(
    rt: Runtime,
    headers: list[tuple[bytes, bytes]],
    query: bytes,
    client_ip: str,
    rec: AccessRecord,
    *,
    websocket: bool = False,
) -> Principal:
    """The principal of this request, or the 401/429 to answer (SPEC §4, §12)."""
    mono = time.monotonic()
    wait_s = rt.auth_failures.retry_after(client_ip, mono)
    if wait_s is not None:
        raise TooManyRequests(
            "too many failed authentication attempts", headers=[("Retry-After", str(wait_s))]
        )
    try:
        principal = _principal(rt, headers, query, websocket)
    except Unauthorized:
        rt.auth_failures.record_failure(client_ip, mono)
        raise
    rec.auth_method = principal.method
    rec.key_id, rec.wallet, rec.tenant = principal.key_id, principal.wallet, principal.tenant
    return principal


def _principal(
    rt: Runtime, headers: list[tuple[bytes, bytes]], query: bytes, websocket: bool
) -> Principal:
    cred = extract_credential(
        headers, query, allow_query_key=rt.config.server.allow_query_key, websocket=websocket
    )
    if cred is None:
        raise Unauthorized("missing or invalid Authorization header")
    if cred.kind == "jwt":
        if rt.tokens is None:
            raise Unauthorized("invalid or expired token")
        account = rt.tokens.verify(cred.value, time.time())
        return principal_for_wallet(account, rt.config.wallet, cred.method)
    if cred.kind in ("api", "management"):
        principal = rt.key_principal(cred.digest, cred.kind, cred.method, datetime.now(UTC))
        if principal is not None:
            return principal
    raise Unauthorized("invalid api key")


async def _wallet_sign_in(
    rt: Runtime,
    client: ClientConnection,
    req: h11.Request,
    headers: list[tuple[bytes, bytes]],
    rid: str,
    rec: AccessRecord,
) -> None:
    if rt.tokens is None or rt.signin is None:
        raise NotFound("not found")
    if req.method != b"POST":
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "POST")])
    values = [v for n, v in headers if n == b"sign-in-with-x"]
    if len(values) != 1:
        raise BadRequest("missing or invalid SIGN-IN-WITH-X header")
    # The SDKs send no body; one that comes is read and ignored (bounded).
    await client.read_body(DISCARD_LIMIT_BYTES, stall_timeout_s=rt.config.server.body_timeout_s)
    tokens, settings, store = rt.tokens, rt.signin, rt.store
    answer = await trio.to_thread.run_sync(
        lambda: sign_in(
            values[0], settings=settings, store=store, tokens=tokens, now=datetime.now(UTC)
        )
    )
    rec.wallet = answer.get("tenant_id")
    await _send_json(client, rt, rec, rid, 200, answer)


async def _send_json(
    client: ClientConnection, rt: Runtime, rec: AccessRecord, rid: str, status: int, obj: object
) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    headers = [*JSON_HEADERS, (b"x-request-id", rid.encode())]
    if rt.draining.is_set():
        headers.append((b"connection", b"close"))
    await client.send_response(status, headers, body)
    rec.status, rec.bytes_out = status, len(body)


@dataclass(frozen=True, slots=True)
class _Outbound:
    """The request as it goes upstream."""

    pool: UpstreamPool
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = field(repr=False)


async def _relay(
    rt: Runtime, client: ClientConnection, out: _Outbound, rid: str, rec: AccessRecord
) -> None:
    """Send the request upstream and relay the answer as it arrives (SPEC §6).

    Before the head is relayed, failures are our JSON errors (502/504). After
    it, the client's response is cut off (no final chunk) so it sees an error,
    never a truncated success.
    """
    t0 = time.perf_counter()
    try:
        async with out.pool.request(
            out.method, out.target, out.headers, out.body, abandoned=client.peer_gone
        ) as resp:
            head = response_headers(resp.headers, request_id=rid)
            if rt.draining.is_set():
                head.append((b"connection", b"close"))
            rec.status = resp.status
            events: list[h11.Event] = [h11.Response(status_code=resp.status, headers=head)]
            try:
                async for chunks, ended in resp.iter_batches():
                    events += [h11.Data(data=c) for c in chunks if c]
                    if ended:
                        events.append(h11.EndOfMessage())
                    if events:
                        await client.send_events(events)
                    if rec.ttfb_ms is None:
                        rec.ttfb_ms = round((time.perf_counter() - t0) * 1000, 3)
                    rec.bytes_out += sum(len(c) for c in chunks)
                    events = []
            except UpstreamBroken:
                rec.error = "upstream broke mid-response"
                if rec.ttfb_ms is None:  # nothing sent yet: the answer can still be ours
                    raise BadGateway("upstream request failed") from None
                raise _Cut() from None
    except (ClientGone, Abandoned):
        # the client left: the upstream request is given up (closed) at once
        rec.error = "client gone"
        raise _Cut() from None
