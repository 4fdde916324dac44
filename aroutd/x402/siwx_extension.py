"""The ``sign-in-with-x`` extension of a 402 challenge (SPEC §10; the reference's 5.3).

It tells a wallet client how to sign in instead of paying (``POST /v1/x402/auth``,
SPEC §8): the ``info`` to sign (our ``public_url``'s host as ``domain``, the sign-in
URL as ``uri``, version 1, a fresh server-issued nonce, ``issuedAt`` now), the chains
sign-in accepts with their signature type (first match wins on the client), and the
JSON Schema of the signed answer, as x402's resource-server extension declares it.

The nonce is 16 random bytes as 32 hex characters (the reference implementations'
choice), drawn by the caller; sign-in accepts each nonce once, so a challenge's nonce
is good for exactly one sign-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SIWX_EXTENSION", "siwx_extension"]

SIWX_EXTENSION = "sign-in-with-x"
STATEMENT = "Sign in to ARouter with your wallet"
_TYPES = {"eip155": "eip191", "solana": "ed25519"}
_DATE_TIME = {"type": "string", "format": "date-time"}
_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "domain": {"type": "string"},
        "address": {"type": "string"},
        "statement": {"type": "string"},
        "uri": {"type": "string", "format": "uri"},
        "version": {"type": "string"},
        "chainId": {"type": "string"},
        "type": {"type": "string"},
        "nonce": {"type": "string"},
        "issuedAt": _DATE_TIME,
        "expirationTime": _DATE_TIME,
        "notBefore": _DATE_TIME,
        "requestId": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "signature": {"type": "string"},
    },
    "required": [
        "domain",
        "address",
        "uri",
        "version",
        "chainId",
        "type",
        "nonce",
        "issuedAt",
        "signature",
    ],
}


def siwx_extension(
    *, public_url: str, networks: Sequence[str], nonce: str, now: datetime
) -> dict[str, Any]:
    """The extension object; ``networks`` are ``[wallet] networks`` (only eip155 and
    solana chains can sign in, so only those are listed)."""
    issued = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    uri = public_url.rstrip("/") + "/v1/x402/auth"
    info = {
        "domain": urlsplit(public_url).netloc,
        "uri": uri,
        "version": "1",
        "nonce": nonce,
        "issuedAt": issued,
        "statement": STATEMENT,
        "resources": [uri],
    }
    chains = [
        {"chainId": n, "type": _TYPES[n.split(":", 1)[0]]}
        for n in networks
        if n.split(":", 1)[0] in _TYPES
    ]
    return {"info": info, "supportedChains": chains, "schema": _SCHEMA}
