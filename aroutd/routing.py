"""Which route serves a path, and which provider and model a request names (SPEC §2, §5).

- ``match_route``: pattern routes first, in file order (``fnmatchcase`` on the
  path without its query), then the route with the longest matching prefix.
- The model comes from the top-level ``"model"`` of a JSON body
  (``model_from_body``), the ``model`` field of a multipart/form-data body
  (``model_from_multipart``, OpenAI audio) or a Gemini path (``model_from_path``);
  ``request_model`` picks. Two ``"model"`` keys are refused: parsers disagree on
  which one wins, so the one we authorize might not be the one the upstream serves.
- ``resolve``: the provider is the model's ``provider/`` prefix when it names a
  known provider (routes or pricing), else the route's ``provider``; the
  canonical model is ``provider/model``.

Everything here is pure: strings and bytes in, values or :class:`BadRequest` out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NoReturn
from urllib.parse import quote, unquote

from aroutd.config.parse import Config, RouteConfig
from aroutd.errors import BadRequest

__all__ = [
    "RouteMatch",
    "known_providers",
    "match_route",
    "model_from_body",
    "model_from_multipart",
    "model_from_path",
    "request_model",
    "resolve",
    "rewrite_body_model",
    "rewrite_path_model",
]

MSG_INVALID_JSON = "invalid JSON body"
MSG_INVALID_MODEL = "invalid model field"
MSG_DUPLICATE_MODEL = "duplicate model field"
MSG_CONFLICTING_MODEL = "conflicting model fields"
MSG_INVALID_MULTIPART = "invalid multipart body"

# Gemini REST: /v1beta/models/{model}:{action} (also /v1/, /v1alpha/). The model is
# everything up to the last ':' (slashes included, so "models/a/b:x" cannot hide
# a model from the policy), the action a bare method name.
_GEMINI_PATH_RE = re.compile(
    r"/v1[A-Za-z0-9]*/models/(?P<model>.+):(?P<action>[A-Za-z]+)", re.DOTALL
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    """Where a request goes and what it asks for."""

    route: RouteConfig
    upstream: str  # upstream name
    provider: str
    model: str | None  # as the client sent it
    canonical_model: str | None  # "provider/model"
    forward_model: str | None  # rewrite the body's model to this; None: leave the body alone
    upstream_path: str  # the path with strip_prefix removed (and a path model rewritten)


def match_route(routes: Sequence[RouteConfig], path: str) -> RouteConfig | None:
    """The route for ``path``: pattern routes in file order, then the longest prefix."""
    path = path.partition("?")[0]
    for route in routes:
        if route.pattern is not None and fnmatchcase(path, route.pattern):
            return route
    best: RouteConfig | None = None
    for route in routes:
        prefix = route.prefix
        if prefix is None or not path.startswith(prefix):
            continue
        # Strictly longer only: among equal prefixes the first in file order wins.
        if best is None or len(prefix) > len(best.prefix or ""):
            best = route
    return best


def known_providers(cfg: Config) -> frozenset[str]:
    """Providers named in the routes (``provider``, ``model_upstreams``) or pricing keys."""
    names: set[str] = set()
    for route in cfg.routes:
        names.add(route.provider)
        names.update(route.model_upstreams)
    for model in cfg.pricing:
        provider, sep, _ = model.partition("/")
        if sep and provider:
            names.add(provider)
    return frozenset(names)


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers whether it had ``"model"`` more than once."""

    duplicate_model = False


def _object_hook(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    # Called for every object, nested ones too; only the top-level result is checked.
    obj.duplicate_model = sum(1 for key, _ in pairs if key == "model") > 1
    return obj


def _reject_constant(name: str) -> NoReturn:
    # NaN, Infinity, -Infinity: Python extensions, not JSON (RFC 8259 §6).
    raise ValueError(name)


def _loads(body: bytes) -> Any:
    """Strict JSON: UTF-8 only (RFC 8259 §8.1), no NaN/Infinity, BadRequest otherwise.

    Objects are _Object (duplicate "model" keys remembered) unless the body
    cannot hold two "model" keys: written raw at most once, and no \\u escape
    that could spell one. Then the C decoder alone does the work, without a
    Python hook per object (most bodies: this is on every request's path).
    """
    hook = _object_hook if b"\\u" in body or body.count(b'"model"') > 1 else None
    try:
        # json.loads(bytes) would also guess UTF-16/32; decode explicitly instead.
        text = body.decode("utf-8")
        return json.loads(text, object_pairs_hook=hook, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadRequest(MSG_INVALID_JSON) from None


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise BadRequest(MSG_INVALID_MODEL)
    try:
        model.encode("utf-8")  # lone surrogates ("\ud800") cannot be logged or forwarded
    except UnicodeEncodeError:
        raise BadRequest(MSG_INVALID_MODEL) from None
    return model


def model_from_body(body: bytes) -> str | None:
    """The top-level ``"model"`` of a JSON object body; None when absent (SPEC §5).

    Raises BadRequest ``invalid JSON body``, ``duplicate model field`` or
    ``invalid model field`` (not a non-empty string).
    """
    if not body:
        return None
    doc = _loads(body)
    if not isinstance(doc, dict):
        return None
    if isinstance(doc, _Object) and doc.duplicate_model:
        raise BadRequest(MSG_DUPLICATE_MODEL)
    if "model" not in doc:
        return None
    return _check_model(doc["model"])


def model_from_path(path: str) -> str | None:
    """The percent-decoded model of a Gemini ``/v1beta/models/{model}:{action}`` path."""
    m = _GEMINI_PATH_RE.fullmatch(path.partition("?")[0])
    if m is None:
        return None
    try:
        model = unquote(m.group("model"), errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(MSG_INVALID_MODEL) from None
    return _check_model(model)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 §5.6.2
# Quoted values without quoted-pairs: parsers disagree on backslashes (RFC 7578 §2
# notes that senders percent-encode instead), so a backslash is refused.
_PARAM_RE = re.compile(rf'[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|"[^"\\]*")[ \t]*')
_TOKEN_RE = re.compile(_TOKEN)


def _media_params(value: str) -> tuple[str, dict[str, str]]:
    """``type; a=b; c="d"`` (RFC 9110 §5.6.6) -> ("type", {"a": "b", "c": "d"}); ValueError else."""
    semi = value.find(";")
    end = len(value) if semi < 0 else semi
    params: dict[str, str] = {}
    i = end
    while i < len(value):
        m = _PARAM_RE.match(value, i)
        if m is None or m.group(1).lower() in params:
            raise ValueError("bad parameters")
        raw = m.group(2)
        params[m.group(1).lower()] = raw[1:-1] if raw[0] == '"' else raw
        i = m.end()
    return value[:end].strip(" \t").lower(), params


def _part_name(head: bytes) -> str:
    """The ``name`` of a form-data part from its header block (RFC 7578 §4.2), strictly."""
    names = []
    for line in head.split(b"\r\n") if head else []:
        field, colon, value = line.decode("latin-1").partition(":")
        if not colon or not _TOKEN_RE.fullmatch(field):
            raise ValueError("bad part header")  # obs-fold and bare LF end up here too
        if field.lower() == "content-disposition":
            disposition, params = _media_params(value)
            if disposition != "form-data" or "name" not in params or "name*" in params:
                raise ValueError("bad content-disposition")
            names.append(params["name"])
    if len(names) != 1:
        raise ValueError("one content-disposition per part")
    return names[0]


def _multipart_model_spans(body: bytes, content_type: str) -> list[tuple[int, int]]:
    """Where the contents of the ``model`` parts of a multipart/form-data body are.

    Parsed strictly (RFC 7578, RFC 2046 §5.1.1: CRLF line ends, no preamble,
    one Content-Disposition per part, a close delimiter): where parsers could
    disagree on the fields, the body is refused rather than guessed.
    """
    try:
        _, params = _media_params(content_type)
        boundary = params["boundary"].encode("ascii")
        delimiter = b"\r\n--" + boundary
        if not 1 <= len(boundary) <= 70 or not body.startswith(delimiter[2:]):  # §5.1.1
            raise ValueError("no first delimiter")
        spans: list[tuple[int, int]] = []
        at = len(delimiter) - 2  # just past the first delimiter
        while not body.startswith(b"--", at):  # else: the close delimiter; then the epilogue
            if not body.startswith(b"\r\n", at):
                raise ValueError("bad delimiter line")
            end = body.find(delimiter, at)
            head_end = body.find(b"\r\n\r\n", at, end if end >= 0 else len(body))
            if end < 0 or head_end < 0:
                raise ValueError("no close delimiter, or a part without a header block end")
            if _part_name(body[at + 2 : head_end]) == "model":
                spans.append((head_end + 4, end))
            at = end + len(delimiter)
        if body.find(delimiter, at) >= 0:
            raise ValueError("parts after the close delimiter")
    except (ValueError, KeyError, UnicodeEncodeError):
        raise BadRequest(MSG_INVALID_MULTIPART) from None
    if len(spans) > 1:
        raise BadRequest(MSG_DUPLICATE_MODEL)
    return spans


def model_from_multipart(body: bytes, content_type: str) -> str | None:
    """The ``model`` field of a multipart/form-data body (OpenAI audio uploads)."""
    spans = _multipart_model_spans(body, content_type)
    if not spans:
        return None
    start, end = spans[0]
    try:
        return _check_model(body[start:end].decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(MSG_INVALID_MODEL) from None


def _is_multipart(body: bytes, content_type: bytes | str | None) -> str | None:
    """The content type as text when the body is to be read as multipart/form-data."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    mime = (content_type or "").partition(";")[0].strip(" \t").lower()
    return content_type if body and content_type and mime == "multipart/form-data" else None


def request_model(path: str, body: bytes, *, content_type: bytes | str | None = None) -> str | None:
    """The request's model from its path, or its body (JSON, or multipart/form-data).

    A Gemini path names the model the upstream serves; a body that names a
    different one is refused, so the policy never checks one model and the
    upstream serves another. Any body that is not multipart/form-data must be JSON.
    """
    multipart = _is_multipart(body, content_type)
    from_path = model_from_path(path)
    if multipart is not None:
        from_body = model_from_multipart(body, multipart)
    else:
        from_body = model_from_body(body)
    if from_path is not None and from_body is not None and from_body != from_path:
        raise BadRequest(MSG_CONFLICTING_MODEL)
    return from_path if from_path is not None else from_body


def _strip(path: str, strip_prefix: str) -> str:
    if not strip_prefix or not path.startswith(strip_prefix):
        return path
    rest = path[len(strip_prefix) :]
    return rest if rest.startswith("/") else "/" + rest


def rewrite_path_model(path: str, new_model: str) -> str:
    """A Gemini path with its model replaced (percent-encoded); other paths unchanged."""
    m = _GEMINI_PATH_RE.fullmatch(path)
    if m is None:
        return path
    start, end = m.span("model")
    return path[:start] + quote(new_model, safe="") + path[end:]


def resolve(
    route: RouteConfig, path: str, model: str | None, providers: frozenset[str]
) -> RouteMatch:
    """Provider, canonical model, upstream and forwarded path of a routed request (SPEC §5)."""
    upstream_path = _strip(path, route.strip_prefix)
    if model is None:
        return RouteMatch(
            route=route,
            upstream=route.model_upstreams.get(route.provider, route.upstream),
            provider=route.provider,
            model=None,
            canonical_model=None,
            forward_model=None,
            upstream_path=upstream_path,
        )
    prefix, sep, bare = model.partition("/")
    if sep and prefix in providers:
        provider = prefix
        forward_model = bare if route.rewrite_model else None
    else:
        provider, bare, forward_model = route.provider, model, None
    if forward_model is not None and model_from_path(upstream_path) == model:
        upstream_path = rewrite_path_model(upstream_path, forward_model)
    return RouteMatch(
        route=route,
        upstream=route.model_upstreams.get(provider, route.upstream),
        provider=provider,
        model=model,
        canonical_model=f"{provider}/{bare}",
        forward_model=forward_model,
        upstream_path=upstream_path,
    )


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":  # RFC 8259 §2 whitespace
        i += 1
    return i


def _top_level_model_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the values of top-level ``"model"`` keys in a valid JSON object text."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    spans: list[tuple[int, int]] = []
    i = _skip_ws(text, 0) + 1  # past "{"
    while True:
        i = _skip_ws(text, i)
        if text.startswith("}", i):
            return spans
        key, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ":"
        _, end = decoder.raw_decode(text, i)
        if key == "model":
            spans.append((i, end))
        i = _skip_ws(text, end)
        if text.startswith(",", i):
            i += 1


def rewrite_body_model(
    body: bytes, new_model: str, *, content_type: bytes | str | None = None
) -> bytes:
    """The body with its top-level ``"model"`` value (or its multipart ``model`` field)
    replaced; every other byte kept.

    A body that is not a JSON object, or has no model, is returned as is. Raises
    BadRequest like :func:`request_model`.
    """
    multipart = _is_multipart(body, content_type)
    if multipart is not None:
        spans = _multipart_model_spans(body, multipart)
        start, end = spans[0] if spans else (len(body), len(body))
        return body[:start] + new_model.encode("utf-8") + body[end:] if spans else body
    if not body or not isinstance(_loads(body), dict):
        return body
    text = body.decode("utf-8")  # _loads proved it valid UTF-8 JSON
    replacement = json.dumps(new_model)
    for start, end in reversed(_top_level_model_spans(text)):
        text = text[:start] + replacement + text[end:]
    return text.encode("utf-8")
