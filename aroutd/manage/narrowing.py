"""Narrowing only: a key made by a tenant's management key never widens the tenant's scope.

Each requested provider must be one of the tenant's, each model pattern covered by
one tenant pattern, each limit at most the tenant's; empty lists and ``None`` limits
inherit (the tenant's scope still applies, so inheriting never widens).

Coverage of globs (matched as in ``aroutd.policy.model_allowed``) is decided on
tokens (literal, ``?``, ``*``, ``[class]``): the tenant pattern's ``*`` absorbs any
run of the pattern's tokens, its single-character tokens absorb one token whose
characters they provably contain. Each piece then matches only strings its absorber
matches, so a derivation proves L(pattern) ⊆ L(by): sound, and incomplete by choice
(long patterns and most mixes of bare and canonical patterns are refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from aroutd.errors import Forbidden

__all__ = [
    "MSG_EXCEEDS",
    "check_narrowing",
    "limit_within",
    "models_within",
    "pattern_covered",
    "providers_within",
]

MSG_EXCEEDS = "requested permissions exceed tenant scope"
MAX_PATTERN = 200  # longer patterns are refused rather than analysed
MAX_SPAN = 512  # the widest code-point span of a class body enumerated for a subset proof

STAR, ANY = "*", "?"  # tokens; a literal is ("", c), a class is its text "[...]"
Token = str | tuple[str, str]


def _tokens(pattern: str) -> list[Token]:
    """Split a glob the way ``fnmatch.translate`` reads it."""
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c in (STAR, ANY):
            if not (c == STAR and out and out[-1] == STAR):
                out.append(c)
        elif c == "[":
            j = i + 1 if i < n and pattern[i] == "!" else i
            j = j + 1 if j < n and pattern[j] == "]" else j
            j = pattern.find("]", j)
            if j < 0:
                out.append(("", "["))  # unclosed: a literal "["
            else:
                out.append(pattern[i - 1 : j + 1])
                i = j + 1
        else:
            out.append(("", c))
    return out


def _span(cls: str) -> list[str] | None:
    """Every character a class's body could name (its members or, negated, its exclusions)."""
    body = cls[2:-1] if cls[1] == "!" else cls[1:-1]
    lo, hi = ord(min(body)), ord(max(body))
    return [chr(k) for k in range(lo, hi + 1)] if hi - lo < MAX_SPAN else None


def _class_within(a: str, b: str) -> bool:
    """True when class ``a`` provably matches only characters class ``b`` matches."""
    if a == b:
        return True
    neg_a, neg_b = a[1] == "!", b[1] == "!"
    if neg_a and not neg_b:
        return False
    span = _span(b if neg_a else a)  # both negated: b's exclusions must be excluded by a
    if span is None:
        return False
    if neg_a:
        return all(fnmatchcase(c, b) or not fnmatchcase(c, a) for c in span)
    return all(fnmatchcase(c, b) for c in span if fnmatchcase(c, a))


def _absorbs(a: Token, b: Token) -> bool:
    """True when the single-character token ``b`` matches every character ``a`` matches."""
    if a == STAR:
        return False
    if b == ANY:
        return True
    if isinstance(b, tuple):
        return a == b
    if isinstance(a, tuple):
        return fnmatchcase(a[1], b)
    return a != ANY and _class_within(a, b)


def _covered(pattern: str, by: str) -> bool:
    a, b = _tokens(pattern), _tokens(by)
    n, m = len(a), len(b)
    # ok[i][j]: the tokens a[i:] are absorbed by b[j:]; filled from the end.
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n, -1, -1):
        for j in range(m - 1, -1, -1):
            if b[j] == STAR:
                ok[i][j] = ok[i][j + 1] or (i < n and ok[i + 1][j])
            else:
                ok[i][j] = i < n and _absorbs(a[i], b[j]) and ok[i + 1][j + 1]
    return ok[0][0]


def pattern_covered(pattern: str, by: str) -> bool:
    """True only when every canonical model that `pattern` admits is admitted by `by`."""
    if len(pattern) > MAX_PATTERN or len(by) > MAX_PATTERN:
        return False
    if ("/" in pattern) == ("/" in by):
        return _covered(pattern, by)
    if "/" in pattern:  # by sees the bare model: sound only after a literal provider
        head, tail = pattern.split("/", 1)
        literal = head != "" and not any(c in head for c in "*?[")
        return literal and _covered(tail, by)
    # pattern admits p/x for any provider p; a canonical without "/" has the bare
    # name "", so a pattern matching "" (only stars) is never covered by "*/...".
    only_stars = all(t == STAR for t in _tokens(pattern))
    return by.startswith("*/") and not only_stars and _covered(pattern, by[2:])


def models_within(requested: tuple[str, ...], tenant: tuple[str, ...]) -> bool:
    """Each requested pattern is covered by one tenant pattern; empty lists mean "any"/"inherit"."""
    if not tenant or not requested:
        return True
    return all(any(pattern_covered(p, t) for t in tenant) for p in requested)


def providers_within(requested: tuple[str, ...], tenant: tuple[str, ...]) -> bool:
    """requested ⊆ tenant when tenant is non-empty; empty requested = inherit = True."""
    return not tenant or set(requested) <= set(tenant)


def limit_within(requested: float | int | None, tenant: float | int | None) -> bool:
    """tenant None: True. requested None (inherits the tenant's, still applied): True."""
    return tenant is None or requested is None or requested <= tenant


def check_narrowing(
    *,
    tenant_providers: tuple[str, ...],
    tenant_models: tuple[str, ...],
    tenant_limits: Mapping[str, float | int | None],
    providers: tuple[str, ...],
    models: tuple[str, ...],
    limits: Mapping[str, float | int | None],
) -> None:
    """Raise Forbidden(MSG_EXCEEDS) unless every part of the request is within the tenant's."""
    if not (
        providers_within(providers, tenant_providers)
        and models_within(models, tenant_models)
        and all(limit_within(v, tenant_limits.get(k)) for k, v in limits.items())
    ):
        raise Forbidden(MSG_EXCEEDS)
