"""One request, from its head to the last byte of its answer.

The order is the contract's (SPEC §4-§6), and each decision is a pure step of
the core (:mod:`aroutd.admission`); this module only sequences them and does
the I/O between them:

    admit_head (405, 400, 404) ─ built-in? ─ held back (429)? ─ credential
      (none, with x402 on an inference path: a payment, checked locally, or the 402)
      ─ principal ─ endpoint kind ─ the management API (shell.management)?
      ─ balance / transactions (shell.ledger)?
      ─ body (≤ max_body_bytes)
      ─ plan_forward (model, provider, upstream, scope) ─ spending limits (403)
      ─ a wallet's payment settled and credited (shell.payments), its balance (402)
      ─ upstream head ─ relay

Each request is also a fault barrier (SPEC §6): an exception that is not one
of our HTTP errors is answered 500 ``internal error`` when nothing was sent yet,
or cuts the connection when the answer had begun; it is logged once with the
request id and where it was raised (never its text, which could hold request
bytes), and counted in ``/metrics``. ``Cancelled`` is never caught.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

import h11
import trio

from aroutd.accesslog import AccessRecord
from aroutd.admission import Admitted, admit_head, plan_forward
from aroutd.auth.signin import sign_in
from aroutd.credentials import extract_credential, redact_query_key
from aroutd.errors import (
    BadRequest,
    HTTPError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from aroutd.forwarding import client_address, request_id_from
from aroutd.headers import (
    CONNECTION_CLOSE,
    JSON_CONTENT_TYPE,
    HeaderList,
    Headers,
    first_value,
    values_of,
)
from aroutd.policy import authorize_endpoint, principal_for_wallet
from aroutd.principal import Principal
from aroutd.shell import logsink
from aroutd.shell.connection import ClientConnection, ClientGone
from aroutd.shell.forward import ConnInfo, forward
from aroutd.shell.ledger import balance, transactions
from aroutd.shell.management import current_key, management
from aroutd.shell.payments import check_wallet_balance, pay, payer_principal, request_payment
from aroutd.shell.ratelimits import RATE_LIMIT_HEADER, admit, standing
from aroutd.shell.relay import Cut
from aroutd.shell.runtime import Runtime
from aroutd.usage.limits import check_spend
from aroutd.x402.check import CheckedPayment

__all__ = ["ConnInfo", "handle_request", "log_fault"]

DISCARD_LIMIT_BYTES = 65536  # a refused request's body smaller than this is read so the
# connection can be kept; a larger one closes the connection instead
MSG_INTERNAL = "internal error"
MSG_AUTH_THROTTLED = "too many failed authentication attempts"


# Request ids need to be unique, not secret: a random per-process prefix and a
# counter (32 hex characters) cost no getrandom() syscall per request.
_RID_PREFIX = secrets.token_hex(8)
_rid_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_RID_PREFIX}{next(_rid_counter):016x}"


async def handle_request(
    rt: Runtime, client: ClientConnection, req: h11.Request, info: ConnInfo
) -> bool:
    """Answer one request. Returns False when the connection must be closed."""
    started = time.perf_counter()
    now = time.time()
    rec = AccessRecord(time=now, start=now, method=req.method.decode("ascii", "replace"))
    rec.path = redact_query_key(req.target)
    headers = list(req.headers)  # once: every step reads them, and h11's view iterates slowly
    rid = request_id_from(headers) or _new_request_id()
    rec.request_id = rid
    keep = True
    auth_failure: str | None = None  # an upstream's own 401 is not our auth failure
    try:
        await _dispatch(rt, client, req, headers, info, rec)
    except HTTPError as err:
        keep = await _answer_error(rt, client, rec, err)
        if err.status == 401 or err.message == MSG_AUTH_THROTTLED:  # ours: safe labels
            auth_failure = err.message
    except Cut:
        keep = False
    except ClientGone:
        raise
    except Exception as exc:  # the fault barrier: never Cancelled, which is a BaseException
        log_fault(rt, "request", exc, request_id=rid)
        rec.error = MSG_INTERNAL
        if client.response_started():
            keep = False  # cut: the client sees an error, never a truncated success
        else:
            keep = await _answer_error(rt, client, rec, InternalError(MSG_INTERNAL, close=True))
    else:
        # answered without reading the body (e.g. /healthz): read what is left
        keep = await _finish_body(rt, client)
    finally:
        duration_s = time.perf_counter() - started
        rec.duration_ms = round(duration_s * 1000, 3)
        rec.time = time.time()  # the line is stamped when the request ends
        if rec.client == "":
            rec.client = info.peer_ip
        logsink.write(rec)
        rt.metrics.observe(
            status=rec.status,
            auth_method=rec.auth_method,
            duration_s=duration_s,
            upstream_s=None if rec.ttfb_ms is None else rec.ttfb_ms / 1000,
            auth_failure=auth_failure,
        )
    return keep and client.can_reuse()


def log_fault(rt: Runtime, where: str, exc: Exception, *, request_id: str | None = None) -> None:
    """One log line and one count for a fault a barrier caught: the exception's type and
    the line that raised it, never its message (it could quote request bytes)."""
    frames = traceback.extract_tb(exc.__traceback__)
    at = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    rt.metrics.internal_errors[where] += 1
    logsink.event(
        "internal_error", where=where, request_id=request_id, error=type(exc).__name__, at=at
    )


async def _answer_error(
    rt: Runtime, client: ClientConnection, rec: AccessRecord, err: HTTPError
) -> bool:
    """Send our error; True when the connection can be kept."""
    rec.status, rec.error = err.status, err.message
    extra = [(b"x-request-id", rec.request_id.encode())]
    keep = not (err.close or rt.draining.is_set()) and await _finish_body(rt, client)
    if not keep:
        extra.append(CONNECTION_CLOSE)
    await client.send_error(err, extra)
    return keep


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
    headers: HeaderList,
    info: ConnInfo,
    rec: AccessRecord,
) -> None:
    cfg = rt.config
    head = admit_head(req.method, req.target, headers, cfg.routes)
    if head.kind == "healthz":
        await _send_json(client, rt, rec, 200, {"status": "ok"})
        return
    if head.kind == "signin":
        await _wallet_sign_in(rt, client, req, headers, rec)
        return
    client_ip, peer_trusted = _client_address(rt, info, headers)
    rec.client = client_ip
    routed = head.kind == "inference" and head.route is not None and not head.upgrade
    payments = rt.payments if routed else None  # SPEC §10: routed inference can be paid
    principal = _authenticate(
        rt, headers, head.target.query, client_ip, rec, head.upgrade, payable=payments is not None
    )
    checked = None
    if payments is not None and (principal is None or principal.wallet is not None):
        checked = request_payment(payments, headers, head.target.path)
        if principal is None:  # SPEC §10: no credential, a payment names the wallet
            principal = payer_principal(rt, checked, rec, head.target.path)
    assert principal is not None
    try:
        authorize_endpoint(principal, head.kind)
        await _serve(rt, client, req, headers, head, principal, checked, info, rec, peer_trusted)
    except HTTPError as err:
        # SPEC §9: every answer to a limited principal shows its window; one given before
        # the limiter ran (403, 402, 404, ...) shows it as it stands
        if principal.rate_limits and not any(n == RATE_LIMIT_HEADER for n, _ in err.headers):
            err.headers = (*err.headers, *await standing(rt, principal))
        raise


async def _serve(
    rt: Runtime,
    client: ClientConnection,
    req: h11.Request,
    headers: HeaderList,
    head: Admitted,
    principal: Principal,
    checked: CheckedPayment | None,
    info: ConnInfo,
    rec: AccessRecord,
    peer_trusted: bool,
) -> None:
    """Answer an authorized request: an endpoint of ours, or an inference to forward."""
    cfg = rt.config
    if head.kind in ("management", "self", "balance", "transactions"):
        if head.kind == "management":
            status, answer = await management(rt, client, req, head, principal)
        elif head.kind == "self":
            status, answer = await current_key(rt, req.method, principal)
        elif head.kind == "balance":
            status, answer = await balance(rt, req.method, principal)
        else:
            status, answer = await transactions(rt, req.method, principal, head.target.query)
        window = await standing(rt, principal)  # not limited, but shown (SPEC §9)
        await _send_json(client, rt, rec, status, answer, window)
        return
    if head.kind != "inference" or head.route is None:
        raise NotFound("not found")
    body = await client.read_body(
        0 if head.upgrade else cfg.server.max_body_bytes,
        stall_timeout_s=cfg.server.body_timeout_s,
    )
    rec.bytes_in = len(body)
    plan = plan_forward(
        head,
        head.route,
        principal,
        body,
        content_type=first_value(headers, b"content-type"),
        providers=rt.providers,
        upstreams=cfg.upstreams,
    )
    match = plan.match
    rec.provider, rec.model, rec.upstream = match.provider, match.canonical_model, match.upstream
    check_spend(rt.spent(principal, datetime.now(UTC)))  # 403 quota_exceeded (SPEC §9)
    extra: list[tuple[str, str]] = []
    if principal.wallet is not None and checked is not None:
        # settled and credited before anything is forwarded
        extra += await pay(rt, checked, principal.wallet, head.target.path, rec.request_id)
    try:
        if principal.wallet is not None:
            check_wallet_balance(rt, principal.wallet, head.target.path)  # 402 (SPEC §9)
        extra += await admit(rt, principal, rec)  # 429 (SPEC §9)
        await forward(rt, client, req, headers, plan, principal, info, rec, peer_trusted, extra)
    except HTTPError as err:  # ours, before the answer began: the payment's JWT, the window
        err.headers = (*err.headers, *extra)
        raise


def _client_address(rt: Runtime, info: ConnInfo, headers: Headers) -> tuple[str, bool]:
    trusted = rt.config.server.trusted_proxies
    if not trusted:
        return info.peer_ip, False
    return client_address(info.peer_ip, headers, trusted)


def _authenticate(
    rt: Runtime,
    headers: Headers,
    query: bytes,
    client_ip: str,
    rec: AccessRecord,
    websocket: bool,
    *,
    payable: bool = False,
) -> Principal | None:
    """The principal of this request, or the 401/429 to answer (SPEC §4, §12); None when
    it has no credential and may pay instead (``payable``: x402 on an inference path)."""
    mono = time.monotonic()
    wait_s = rt.auth_failures.retry_after(client_ip, mono)
    if wait_s is not None:
        raise TooManyRequests(MSG_AUTH_THROTTLED, headers=[("Retry-After", str(wait_s))])
    try:
        principal = _principal(rt, headers, query, websocket)
        if principal is None and not payable:
            raise Unauthorized("missing or invalid Authorization header")
    except Unauthorized:
        rt.auth_failures.record_failure(client_ip, mono)
        raise
    if principal is None:
        return None
    rec.auth_method = principal.method
    rec.key_id, rec.wallet, rec.tenant = principal.key_id, principal.wallet, principal.tenant
    return principal


def _principal(rt: Runtime, headers: Headers, query: bytes, websocket: bool) -> Principal | None:
    cred = extract_credential(
        headers, query, allow_query_key=rt.config.server.allow_query_key, websocket=websocket
    )
    if cred is None:
        return None
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
    rt: Runtime, client: ClientConnection, req: h11.Request, headers: Headers, rec: AccessRecord
) -> None:
    if rt.tokens is None or rt.signin is None:
        raise NotFound("not found")
    if req.method != b"POST":
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "POST")])
    values = values_of(headers, b"sign-in-with-x")
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
    await _send_json(client, rt, rec, 200, answer)


async def _send_json(
    client: ClientConnection,
    rt: Runtime,
    rec: AccessRecord,
    status: int,
    obj: object,
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    headers = [JSON_CONTENT_TYPE, (b"x-request-id", rec.request_id.encode())]
    headers += [(n.encode(), v.encode()) for n, v in extra]
    if rt.draining.is_set():
        headers.append(CONNECTION_CLOSE)
    await client.send_response(status, headers, body)
    rec.status, rec.bytes_out = status, len(body)
