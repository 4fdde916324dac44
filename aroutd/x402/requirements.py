"""What aroutd asks a client to pay, and the x402 header codec (SPEC §10).

- :func:`payment_required`: the ``PaymentRequired`` object (x402-siwx.md §1.3) as a
  dict. ``accepts`` holds, per configured network in config order, the default top-up
  first and then the other tiers ascending (a client takes the first it is willing to
  pay), without duplicates and only tiers up to ``max_topup_usd``. Each requirement is
  ``{scheme, network, amount, asset, payTo, maxTimeoutSeconds, extra}``: EVM ``extra``
  is the EIP-712 ``{name, version}`` (§2.1); Solana ``extra`` is ``{feePayer}`` from the
  facilitator's ``GET /supported`` (§3.1, §4), and a Solana network with no fee payer
  is left out, since no client could build its transaction.
- :func:`encode_header` / :func:`decode_header`: standard base64 (RFC 4648 §4) of
  compact UTF-8 JSON (§1.2). Decoding refuses URL-safe base64, sizes above
  :data:`MAX_HEADER_CHARS`, nesting deeper than :data:`MAX_JSON_DEPTH`, duplicate keys
  and NaN/Infinity, each as 400, never another exception.
- :func:`find_accepted`: the advertised requirement a v2 payload's ``accepted`` equals
  (SPEC §10: "requires accepted to equal one advertised requirement"); JSON equality
  with types kept apart (``true`` is not ``1``, ``300.0`` is not ``300``).
- :func:`payment_response` / :func:`payment_failure`: the ``PAYMENT-RESPONSE`` object
  (§1.5), with aroutd's ``jwt`` on success.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aroutd.auth.evm import to_checksum_address
from aroutd.config.values import X402Config
from aroutd.errors import BadRequest
from aroutd.x402.networks import EvmNetwork, SolanaNetwork, network, usd_to_atomic

__all__ = [
    "MAX_HEADER_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_TIMEOUT_SECONDS",
    "SCHEME_EXACT",
    "X402_VERSION",
    "accepts",
    "decode_header",
    "encode_header",
    "find_accepted",
    "payment_failure",
    "payment_required",
    "payment_response",
    "topup_amounts",
]

X402_VERSION = 2
SCHEME_EXACT = "exact"
# The Python resource server's default (impl-py server_base: ``max_timeout_seconds or 300``).
MAX_TIMEOUT_SECONDS = 300
# A Solana transaction is at most 1232 bytes (1644 in base64) and an EVM payload well
# under 1 KiB; what is left is for ``resource`` and the echoed SIWx extension.
MAX_HEADER_CHARS = 16384
MAX_JSON_DEPTH = 32
_B64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_EVM_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)


def topup_amounts(cfg: X402Config) -> tuple[str, ...]:
    """Atomic amounts to offer: the default first, then the other tiers ascending (§10)."""
    default = usd_to_atomic(cfg.topup_usd)
    limit = int(usd_to_atomic(cfg.max_topup_usd))
    tiers = {int(usd_to_atomic(t)) for t in cfg.topup_tiers_usd}
    others = sorted(t for t in tiers if t <= limit and t != int(default))
    return (default, *map(str, others))


def _requirement(
    net: EvmNetwork | SolanaNetwork, amount: str, pay_to: str, extra: dict[str, Any]
) -> dict[str, Any]:
    asset = net.usdc if isinstance(net, EvmNetwork) else net.usdc_mint
    return {
        "scheme": SCHEME_EXACT,
        "network": net.caip2,
        "amount": amount,
        "asset": asset,
        "payTo": pay_to,
        "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
        "extra": extra,
    }


def accepts(cfg: X402Config, solana_fee_payers: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``accepts`` list of SPEC §10 for the configured networks."""
    amounts = topup_amounts(cfg)
    out: list[dict[str, Any]] = []
    for caip2 in dict.fromkeys(cfg.networks):
        net = network(caip2)
        if isinstance(net, EvmNetwork) and _EVM_ADDRESS_RE.fullmatch(cfg.pay_to_evm):
            # Advertise the EIP-55 spelling: clients sign over payTo as given.
            pay_to = to_checksum_address(bytes.fromhex(cfg.pay_to_evm[2:]))
            extra = {"name": net.eip712_name, "version": net.eip712_version}
        elif isinstance(net, SolanaNetwork) and cfg.pay_to_solana and solana_fee_payers.get(caip2):
            pay_to, extra = cfg.pay_to_solana, {"feePayer": solana_fee_payers[caip2]}
        else:
            continue  # unknown network, no payTo (the config requires one), or no fee payer
        out += [_requirement(net, a, pay_to, dict(extra)) for a in amounts]
    return out


def payment_required(
    cfg: X402Config,
    *,
    resource_url: str,
    description: str,
    mime_type: str,
    error: str | None,
    solana_fee_payers: Mapping[str, str],
    siwx: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``PaymentRequired`` object for the ``PAYMENT-REQUIRED`` header (§1.3)."""
    obj: dict[str, Any] = {"x402Version": X402_VERSION}
    if error is not None:
        obj["error"] = error
    obj["resource"] = {"url": resource_url, "description": description, "mimeType": mime_type}
    obj["accepts"] = accepts(cfg, solana_fee_payers)
    if siwx is not None:
        obj["extensions"] = {"sign-in-with-x": dict(siwx)}
    return obj


def payment_response(*, transaction: str, network: str, payer: str, jwt: str) -> dict[str, Any]:
    """``PAYMENT-RESPONSE`` after settlement succeeded (SPEC §10, x402-siwx.md §1.5)."""
    return {
        "success": True,
        "transaction": transaction,
        "network": network,
        "payer": payer,
        "jwt": jwt,
    }


def payment_failure(
    *, error_reason: str, network: str, payer: str | None = None, transaction: str = ""
) -> dict[str, Any]:
    """``PAYMENT-RESPONSE`` after settlement failed: ``success`` false, ``transaction`` ""."""
    obj: dict[str, Any] = {
        "success": False,
        "errorReason": error_reason,
        "transaction": transaction,
        "network": network,
    }
    if payer is not None:
        obj["payer"] = payer
    return obj


def encode_header(obj: Mapping[str, Any]) -> str:
    """Standard base64 of compact UTF-8 JSON (x402-siwx.md §1.2)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.b64encode(text.encode()).decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins; the facilitator must see what we saw.
        raise ValueError("duplicate key")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a deep document must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack += [(child, level + 1) for child in children]
    return deepest


def decode_header(value: str | bytes, *, name: str = "x402") -> dict[str, Any]:
    """The JSON object in an x402 header; 400 ``invalid <name> header: <why>`` otherwise."""
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    raw = raw.strip(b" \t")
    if len(raw) > MAX_HEADER_CHARS:
        raise BadRequest(f"invalid {name} header: too large")
    if not raw or not _B64_RE.fullmatch(raw):
        raise _bad(name, "not standard base64")
    data = raw.rstrip(b"=")
    try:
        text = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True).decode()
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (binascii.Error, ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; so is a huge integer.
        raise _bad(name, "not base64 of UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise _bad(name, "not a JSON object")
    if _depth(obj) > MAX_JSON_DEPTH:
        raise _bad(name, "JSON nested too deeply")
    return obj


def _bad(name: str, why: str) -> BadRequest:
    return BadRequest(f"invalid {name} header: {why}")


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality that keeps types apart (Python says ``True == 1 == 1.0``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return bool(a == b)


def find_accepted(
    accepted: Mapping[str, Any], advertised: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The advertised requirement ``accepted`` equals (SPEC §10), or None."""
    for requirement in advertised:
        if _same_json(dict(accepted), dict(requirement)):
            return requirement
    return None
