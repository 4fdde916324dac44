"""Wallet sign-in, ``POST /v1/x402/auth`` (SPEC §8): header in, wallet JWT out.

:func:`verify_signin` is pure (values in, a :class:`VerifiedSignin` or an error out);
:func:`sign_in` adds the two state-store writes and the token. ``sign_in`` blocks on
the store (an fsync'd sqlite write): call it from a worker thread.

Checks, in this order, the first failure answering:

1. decode the header and parse the message            400 (see ``siwx``)
2. the chain: from the x402 ``chainId``, else the message's ``Chain ID`` (a number is
   ``eip155:N``, anything else ``solana:REF``, a full CAIP-2 id as written); it must be
   in ``[wallet].networks``                           401 ``unsupported chain``
   and agree with the account line ("Ethereum" / "Solana") and the x402 ``type``
                                                      400 ``invalid SIWx message: …``
3. the address: ``0x`` hex (mixed case = valid EIP-55) or base58 of 32 bytes
                                                      400 ``malformed address[…]``
4. domain = public_url's host[:port], the URI's origin = public_url's origin, an
   optional ``scheme://`` = public_url's scheme (default ports are equivalent)
                                                      401 ``domain mismatch``
5. Issued At older than max_age_s, or Expiration Time reached
                                                      401 ``message expired``
   Issued At more than 60 s ahead, or Not Before not reached
                                                      401 ``message not yet valid``
6. the signature (EIP-191 recovery / ed25519)          401 ``invalid signature``
7. (``sign_in``) the nonce, consumed only now          401 ``nonce already used``

The nonce's syntax (8+ alphanumerics) is part of step 1: 400 ``malformed nonce``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aroutd.auth import evm, solana
from aroutd.auth.siwx import SiwxPayload, decode_header, parse_timestamp
from aroutd.auth.walletjwt import WalletTokens
from aroutd.config.parse import Config
from aroutd.errors import BadRequest, Unauthorized
from aroutd.store.base import WalletStore

__all__ = [
    "FUTURE_SKEW_S",
    "SigninSettings",
    "VerifiedSignin",
    "resolve_chain",
    "sign_in",
    "verify_signin",
]

FUTURE_SKEW_S = 60  # SPEC §2: Issued At may be this far ahead of our clock
_CAIP2_RE = re.compile(r"[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}", re.ASCII)
_LABELS = {"eip155": "Ethereum", "solana": "Solana"}
_SIGNATURE_TYPES = {"eip155": "eip191", "solana": "ed25519"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, kw_only=True)
class SigninSettings:
    public_url: str  # the origin clients use; binds domain and URI
    networks: tuple[str, ...]  # CAIP-2 chains accepted
    max_age_s: int  # how old Issued At may be

    @classmethod
    def from_config(cls, cfg: Config) -> SigninSettings:
        return cls(
            public_url=cfg.server.public_url,
            networks=cfg.wallet.networks,
            max_age_s=cfg.wallet.siwx_max_age_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSignin:
    account: str  # CAIP-10: "eip155:8453:0xAbC…" (EIP-55) or "solana:5eykt…:<base58>"
    chain: str  # CAIP-2
    address: str  # as in the account
    nonce: str
    nonce_expires_at: datetime  # the last moment the message could still verify


def resolve_chain(chain_id: str) -> str:
    """The CAIP-2 id for a ``Chain ID`` value: ``8453`` -> ``eip155:8453``, a base58
    reference -> ``solana:REF``, a full CAIP-2 id unchanged; 400 when it is none of these."""
    if ":" not in chain_id:
        chain_id = f"eip155:{chain_id}" if chain_id.isdecimal() else f"solana:{chain_id}"
    if not _CAIP2_RE.fullmatch(chain_id):
        raise BadRequest("invalid SIWx message: malformed Chain ID")
    return chain_id


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, (host or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _check_binding(payload: SiwxPayload, public_url: str) -> None:
    """Step 4: the message names this server (SPEC §8, x402-siwx.md §5.6)."""
    msg = payload.message
    try:
        public = urlsplit(public_url)
        expected = _origin(public.scheme, public.hostname, public.port)
        domain = urlsplit(f"//{msg.domain}")
        uri = urlsplit(msg.uri)
        matches = (
            _origin(public.scheme, domain.hostname, domain.port) == expected
            and _origin(uri.scheme, uri.hostname, uri.port) == expected
            and uri.username is None
            and uri.password is None
            and (msg.scheme is None or msg.scheme.lower() == expected[0])
        )
    except ValueError:  # a port out of range or not a number
        matches = False
    if not matches:
        raise Unauthorized("domain mismatch")


def _check_times(payload: SiwxPayload, max_age_s: int, now: datetime) -> datetime:
    """Step 5; returns when the message stops being valid (min of expiry and max age)."""
    msg = payload.message
    issued_at = parse_timestamp(msg.issued_at)
    valid_until = issued_at + timedelta(seconds=max_age_s)
    if now > valid_until:
        raise Unauthorized("message expired")
    if issued_at > now + timedelta(seconds=FUTURE_SKEW_S):
        raise Unauthorized("message not yet valid")
    if msg.expiration_time is not None:
        expires_at = parse_timestamp(msg.expiration_time)
        if now >= expires_at:
            raise Unauthorized("message expired")
        valid_until = min(valid_until, expires_at)
    if msg.not_before is not None and now < parse_timestamp(msg.not_before):
        raise Unauthorized("message not yet valid")
    return valid_until


def _verify_any(texts: tuple[str, ...], check: Callable[[bytes], None]) -> None:
    """The signature must hold over one of the renderings (the first, nearly always)."""
    for text in texts[:-1]:
        try:
            check(text.encode())
            return
        except Unauthorized:
            continue
    check(texts[-1].encode())


def verify_signin(
    payload: SiwxPayload,
    *,
    public_url: str,
    networks: tuple[str, ...],
    max_age_s: int,
    now: datetime,
) -> VerifiedSignin:
    """Steps 2-6 of the module docstring for a decoded header; ``now`` is aware UTC."""
    msg = payload.message
    from_message = resolve_chain(msg.chain_id)
    chain = payload.chain if payload.chain is not None else from_message
    namespace = chain.partition(":")[0]
    if chain not in networks or namespace not in _LABELS:
        raise Unauthorized("unsupported chain")
    if from_message != chain or msg.account_type != _LABELS[namespace]:
        raise BadRequest("invalid SIWx message: the account type does not match the Chain ID")
    if payload.signature_type is not None and payload.signature_type != _SIGNATURE_TYPES[namespace]:
        raise BadRequest("invalid SIGN-IN-WITH-X header: type does not match chainId")

    check: Callable[[bytes], None]
    if namespace == "eip155":
        address_bytes, address = evm.parse_checksummed(msg.address)

        def check(text: bytes) -> None:
            evm.verify_personal_sign(text, payload.signature, address_bytes)

    else:
        public_key = solana.parse_address(msg.address)
        address = msg.address

        def check(text: bytes) -> None:
            solana.verify_signature(text, solana.decode_signature(payload.signature), public_key)

    _check_binding(payload, public_url)
    valid_until = _check_times(payload, max_age_s, now)
    _verify_any(payload.texts, check)
    return VerifiedSignin(
        account=f"{chain}:{address}",
        chain=chain,
        address=address,
        nonce=msg.nonce,
        nonce_expires_at=valid_until,
    )


def sign_in(
    header_value: bytes,
    *,
    settings: SigninSettings,
    store: WalletStore,
    tokens: WalletTokens,
    now: datetime,
) -> dict[str, str]:
    """The 200 body of ``POST /v1/x402/auth`` for a SIGN-IN-WITH-X header value.

    ``header_value`` is the raw value (``b""`` when the header is absent: 400 ``missing
    SIGN-IN-WITH-X header``). Nonces are global, not per wallet: SDKs send 16 random
    bytes. The nonce is consumed only after the signature verified, so a forged request
    cannot burn someone else's nonce. The first sign-in creates the wallet account.
    """
    verified = verify_signin(
        decode_header(header_value),
        public_url=settings.public_url,
        networks=settings.networks,
        max_age_s=settings.max_age_s,
        now=now,
    )
    if not store.use_nonce(verified.nonce, verified.nonce_expires_at, now):
        raise Unauthorized("nonce already used")
    wallet = store.ensure_wallet(verified.account, now)
    return {
        "jwt": tokens.issue(verified.account, now),
        "tenant_id": f"wallet:{verified.account}",
        "key_id": wallet.id,
    }
