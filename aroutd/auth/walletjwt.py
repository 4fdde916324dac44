"""Wallet JWTs (SPEC §8, presented as a Bearer token per §4): issue and verify.

- HS256 only, pinned here and never read from the token. The ``kid`` header is the
  first 16 hex of sha256(secret), so a token names its key without revealing it;
  verification picks the key by ``kid`` among the current and previous secrets
  (rotation: move the old file to ``jwt_previous_secret_files``).
- Claims: ``iss`` = public_url, ``sub`` = CAIP-10 account, ``aud`` = ``"aroutd"``,
  ``iat``, ``exp``, ``jti``. ``exp`` is checked against the caller's ``now``.
- A verified token is cached by its sha256 until its ``exp`` (bounded, least recently
  used out first), so a wallet's steady-state request costs one hash and a dict lookup.
  Safe to call from several threads; a new instance (new secrets) starts a new cache.
- Every failure is the same 401 ``invalid or expired token``. Tokens and secrets never
  appear in errors or reprs.

The secret is given as bytes (at least 32); reading and creating the secret files is
:mod:`aroutd.shell.files`' work.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

import jwt

from aroutd.errors import ConfigError, Unauthorized

__all__ = [
    "AUDIENCE",
    "MIN_SECRET_BYTES",
    "WalletTokens",
    "key_id",
]

AUDIENCE = "aroutd"
MIN_SECRET_BYTES = 32
_ALGORITHMS = ["HS256"]
_MAX_TOKEN_CHARS = 4096
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti"]
_DECODE_OPTIONS = {
    # exp is checked against the caller's clock below, not PyJWT's time.time().
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "require": _REQUIRED_CLAIMS,
}


def key_id(secret: bytes) -> str:
    """The ``kid`` of a secret: the first 16 hex of its sha256."""
    return hashlib.sha256(secret).hexdigest()[:16]


def _kid_of(token: str) -> str | None:
    """The ``kid`` of a token's header, read without verifying anything: it only picks the
    key to verify with (PyJWT's own header parse is slow and would run twice)."""
    head = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        return None  # RecursionError: a header of deeply nested arrays, under 4 KB
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class WalletTokens:
    """Issues and verifies wallet JWTs for one set of secrets; see the module docstring."""

    __slots__ = ("_cache", "_cache_size", "_current", "_issuer", "_keys", "_ttl_s")

    def __init__(
        self,
        *,
        secret: bytes,
        previous: Sequence[bytes] = (),
        issuer: str,
        ttl_s: int,
        cache_size: int = 65536,
    ) -> None:
        if any(len(s) < MIN_SECRET_BYTES for s in (secret, *previous)):
            raise ConfigError([f"JWT secrets must be at least {MIN_SECRET_BYTES} bytes"])
        if ttl_s <= 0:
            raise ConfigError(["jwt_ttl_s must be positive"])
        self._current = (key_id(secret), secret)
        self._keys = {key_id(s): s for s in previous}
        self._keys[self._current[0]] = secret
        self._issuer = issuer
        self._ttl_s = ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __repr__(self) -> str:
        kid, keys = self._current[0], len(self._keys)
        return f"WalletTokens(kid={kid!r}, keys={keys}, iss={self._issuer!r})"

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def issue(self, sub: str, now: datetime) -> str:
        """A fresh token for ``sub`` (a CAIP-10 account), valid for ttl_s from ``now``."""
        iat = int(now.timestamp())
        kid, secret = self._current
        claims = {
            "iss": self._issuer,
            "sub": sub,
            "aud": AUDIENCE,
            "iat": iat,
            "exp": iat + self._ttl_s,
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})

    def verify(self, token: str, now: float) -> str:
        """The ``sub`` of a token valid at unix time ``now``; else 401 (see the module doc)."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthorized("invalid or expired token")
        digest = hashlib.sha256(token.encode()).digest()
        cache = self._cache
        hit = cache.get(digest)
        # Each step tolerates another thread having evicted the entry meanwhile: the cache
        # is only a shortcut, never the authority.
        if hit is not None:
            sub, exp = hit
            if now < exp:
                with contextlib.suppress(KeyError):
                    cache.move_to_end(digest)
                return sub
            cache.pop(digest, None)
            raise Unauthorized("invalid or expired token")
        sub, exp = self._verify_uncached(token, now)
        cache[digest] = (sub, exp)
        while len(cache) > self._cache_size:
            with contextlib.suppress(KeyError):
                cache.popitem(last=False)
        return sub

    def _verify_uncached(self, token: str, now: float) -> tuple[str, float]:
        kid = _kid_of(token)
        secret = self._keys.get(kid) if kid is not None else None
        if secret is None:
            raise Unauthorized("invalid or expired token")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=_ALGORITHMS,
                audience=AUDIENCE,
                issuer=self._issuer,
                options=_DECODE_OPTIONS,  # type: ignore[arg-type]
            )
        except Exception:  # the library's boundary: whatever untrusted bytes make it raise
            # (PyJWTError, or RecursionError from a nested header) is the same 401
            raise Unauthorized("invalid or expired token") from None
        sub, exp = claims.get("sub"), claims.get("exp")
        if (
            not isinstance(sub, str)
            or not sub
            or isinstance(exp, bool)
            or not isinstance(exp, int | float)
            or not now < exp
        ):
            raise Unauthorized("invalid or expired token")
        return sub, float(exp)
