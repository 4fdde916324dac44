"""Admission: what a request is and, once its principal is known, where it may go (SPEC §4-§6).

Two pure steps, each a value in and a value (or our error) out; the shell
(:mod:`aroutd.shell.handler`) does the I/O between them (authentication, the
body) and after them (the upstream request):

1. :func:`admit_head` reads the head alone: the method (``CONNECT`` and
   ``TRACE``: 405), the normalized target (400), and what the path is, a
   built-in endpoint (SPEC §2) or a route (else 404); a WebSocket upgrade too.
2. :func:`plan_forward` takes the admitted head, the principal and the body:
   the model (path, body or the upgrade's query), the provider and upstream,
   the scope check (403), the forwarded body (model rewritten) and target.

Limits, 402 challenges and the management API each come in as one more step
between these, taking the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

from aroutd.config.parse import RouteConfig, UpstreamConfig
from aroutd.credentials import strip_query_key
from aroutd.errors import BadRequest, MethodNotAllowed, NotFound
from aroutd.headers import Headers, values_of
from aroutd.policy import Endpoint, authorize_model
from aroutd.principal import Principal
from aroutd.routing import RouteMatch, match_route, request_model, resolve, rewrite_body_model
from aroutd.target import Target, normalize_target

__all__ = ["Admitted", "Forward", "admit_head", "is_upgrade", "plan_forward"]

PROTECTED_PREFIXES = ("/v1/", "/v1beta/", "/api/v1/")
NEVER_FORWARDED = frozenset({b"CONNECT", b"TRACE"})  # SPEC §6: 405, never forwarded
ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

# What a path is, before anyone is authenticated: a built-in that needs no
# principal, or something that does (an endpoint kind of SPEC §5).
Kind = Literal["healthz", "signin"] | Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """A request head that may go on to authentication."""

    target: Target
    kind: Kind
    route: RouteConfig | None  # for "inference"; None answers 404 after authentication
    upgrade: bool  # a WebSocket opening handshake


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """An allowed request, as it goes upstream."""

    match: RouteMatch
    target: bytes  # the upstream's base path + the forwarded path + the query without key
    body: bytes = field(repr=False)
    upgrade: bool = False  # a WebSocket handshake


def is_upgrade(method: bytes, headers: Headers) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1): GET with Upgrade: websocket."""
    if method != b"GET":
        return False
    return any(v.strip().lower() == b"websocket" for v in values_of(headers, b"upgrade"))


def admit_head(
    method: bytes, raw_target: bytes, headers: Headers, routes: tuple[RouteConfig, ...]
) -> Admitted:
    """What this head asks for; MethodNotAllowed, BadRequest or NotFound otherwise."""
    if method in NEVER_FORWARDED:
        raise MethodNotAllowed("method not allowed", headers=[("Allow", ALLOW)])
    target = normalize_target(raw_target)
    path = target.path
    route: RouteConfig | None = None
    kind: Kind
    if path == "/healthz":
        kind = "healthz"
    elif path == "/v1/x402/auth":
        kind = "signin"
    elif path == "/api/v1/keys" or path.startswith("/api/v1/keys/"):
        kind = "management"
    elif path in ("/v1/key", "/api/v1/key"):
        kind = "self"
    elif path == "/api/v1/balance":
        kind = "balance"
    elif path == "/api/v1/transactions":
        kind = "transactions"
    else:
        kind = "inference"
        route = match_route(routes, path)
        if route is None and not path.startswith(PROTECTED_PREFIXES):
            raise NotFound("not found")
    return Admitted(target=target, kind=kind, route=route, upgrade=is_upgrade(method, headers))


def plan_forward(
    head: Admitted,
    route: RouteConfig,
    principal: Principal,
    body: bytes,
    *,
    content_type: bytes | None,
    providers: frozenset[str],
    upstreams: Mapping[str, UpstreamConfig],
) -> Forward:
    """Model, provider, upstream and scope of an authenticated request (SPEC §5, §6)."""
    path = head.target.path
    if head.upgrade:  # a WebSocket handshake (OpenAI Realtime): the model is the query's
        model = _query_model(head.target.query)
    else:
        forwarded_path = resolve(route, path, None, providers).upstream_path
        model = request_model(forwarded_path, body, content_type=content_type)
    match = resolve(route, path, model, providers)
    authorize_model(
        principal, match.provider, match.canonical_model, choosable=bool(body) or head.upgrade
    )
    if match.forward_model is not None:
        body = rewrite_body_model(body, match.forward_model, content_type=content_type)
    target = (upstreams[match.upstream].base_path + match.upstream_path).encode("ascii")
    query = strip_query_key(head.target.query)
    target = target + b"?" + query if query else target
    return Forward(match=match, target=target, body=body, upgrade=head.upgrade)


def _query_model(query: bytes) -> str | None:
    values = [v for k, v in parse_qsl(query.decode("latin-1")) if k == "model"]
    if len(set(values)) > 1:
        raise BadRequest("duplicate model field")
    return values[0] if values and values[0] else None
