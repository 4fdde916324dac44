"""Sign-In-With-X messages (CAIP-122 in the EIP-4361 layout) and the SIGN-IN-WITH-X header.

Pure functions, no clock, no crypto (see ``evm``, ``solana`` and ``signin``):

- :func:`parse_message` / :func:`build_message`: the message text (SPEC §8), strict:
  LF only, no trailing newline, the lines in EIP-4361 order, nothing else. With no
  statement, one or two empty lines between the address and ``URI:`` (x402's Solana
  formatter and viem write one, siwe libraries and the EIP-4361 ABNF two); the count is
  kept so that ``build_message(parse_message(text)) == text``.
- :func:`decode_header`: the header value (standard base64 of JSON) in either form:
  ARouter SDK ``{"message", "signature"}``, or the x402 extension's field object, whose
  message is rebuilt the way x402's own formatters build it (x402-siwx.md §5.2).

Everything that is not well formed is 400 ``invalid_request_error``:
``missing SIGN-IN-WITH-X header``, ``SIGN-IN-WITH-X header too large``,
``invalid SIGN-IN-WITH-X header: <why>``, ``invalid SIWx message: <why>`` and
``malformed nonce``. The reasons never quote the client's text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aroutd.errors import BadRequest

__all__ = [
    "MAX_HEADER_DECODED_BYTES",
    "SiwxMessage",
    "SiwxPayload",
    "build_message",
    "decode_header",
    "parse_message",
    "parse_timestamp",
]

MAX_HEADER_DECODED_BYTES = 8192
_MAX_HEADER_CHARS = (MAX_HEADER_DECODED_BYTES + 2) // 3 * 4

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
# RFC 3986 authority without userinfo: reg-name or IP literal, optional port.
_DOMAIN = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::[0-9]{1,5})?"
_HEADER_RE = re.compile(
    rf"(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_DOMAIN})"
    r" wants you to sign in with your (?P<label>[A-Za-z0-9]+) account:",
    re.ASCII,
)
_TOKEN_RE = re.compile(r"[\x21-\x7e]+", re.ASCII)  # printable ASCII, no space
_URI_RE = re.compile(rf"{_SCHEME}:[\x21-\x7e]+", re.ASCII)
_CHAIN_ID_RE = re.compile(r"[-_A-Za-z0-9]{1,64}(?::[-_A-Za-z0-9]{1,64})?", re.ASCII)
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}", re.ASCII)  # EIP-4361: 8*( ALPHA / DIGIT )
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]*", re.ASCII)
# RFC 3339 date-time (the EIP-4361 ABNF; ABNF literals are case-insensitive).
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_B64_RE = re.compile(rb"[A-Za-z0-9+/\-_]+={0,2}")
_FIELDS = ("URI", "Version", "Chain ID", "Nonce", "Issued At")
_OPTIONAL = ("Expiration Time", "Not Before", "Request ID")


@dataclass(frozen=True, slots=True, kw_only=True)
class SiwxMessage:
    """The fields of one message, as written in it (timestamps verbatim)."""

    scheme: str | None = None  # EIP-4361 optional "scheme://" before the domain
    domain: str  # RFC 3986 authority: host[:port]
    account_type: str  # "Ethereum" | "Solana" in "sign in with your … account:"
    address: str
    statement: str | None = None
    blank_lines: int = 2  # 1 or 2 empty lines before "URI:" when statement is None
    uri: str
    version: str = "1"
    chain_id: str  # the "Chain ID:" value: "8453", "5eykt…", or a full CAIP-2 id
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] | None = None  # () is a bare "Resources:" line


@dataclass(frozen=True, slots=True, kw_only=True)
class SiwxPayload:
    """A decoded header: the message, the signed text and the signature as sent."""

    message: SiwxMessage
    # The exact text that was signed. For the x402 form, the renderings to try in order:
    # libraries disagree on the empty lines when there is no statement.
    texts: tuple[str, ...]
    signature: str
    chain: str | None = None  # x402 form: its CAIP-2 "chainId"; None: read the message
    signature_type: str | None = None  # x402 form: "eip191" | "ed25519"


def _bad(why: str) -> BadRequest:
    return BadRequest(f"invalid SIWx message: {why}")


def _bad_header(why: str) -> BadRequest:
    return BadRequest(f"invalid SIGN-IN-WITH-X header: {why}")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time (with or without fractional seconds) as an aware UTC datetime."""
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise _bad("timestamps must be RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micros = int((m.group(7) or "0")[:6].ljust(6, "0"))
    offset = m.group(8)
    try:
        tz = UTC
        if offset not in ("Z", "z"):
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        # A leap second (":60") is refused by datetime like any other impossible value.
        stamp = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
        return stamp.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _bad("timestamps must be RFC 3339") from None


def parse_message(text: str) -> SiwxMessage:
    """The fields of a CAIP-122 message in the EIP-4361 layout; 400 on anything else."""
    if len(text) > MAX_HEADER_DECODED_BYTES:
        raise _bad("too long")
    if "\r" in text:
        raise _bad("lines must end with LF only")
    lines = text.split("\n")
    count = len(lines)

    def line(i: int) -> str | None:
        return lines[i] if i < count else None

    head = _HEADER_RE.fullmatch(lines[0])
    if head is None:
        raise _bad("line 1 must be '<domain> wants you to sign in with your <chain> account:'")
    address = line(1)
    if address is None or not _TOKEN_RE.fullmatch(address):
        raise _bad("line 2 must be the address")
    if line(2) != "":
        raise _bad("line 3 must be empty")
    statement: str | None = None
    blank_lines = 2
    third, fourth = line(3), line(4)
    if third is not None and third.startswith("URI: "):
        blank_lines, i = 1, 3
    elif third == "" and fourth is not None and fourth.startswith("URI: "):
        i = 4
    elif third is None:
        raise _bad("expected 'URI: ' on line 4")
    else:
        if not third.isprintable():
            raise _bad("the statement must be one line of printable text")
        if fourth != "":
            raise _bad("the statement must be followed by an empty line")
        statement, i = third, 5

    values: dict[str, str] = {}
    for name in _FIELDS:
        current = line(i)
        if current is None or not current.startswith(f"{name}: "):
            raise _bad(f"expected '{name}: ' on line {i + 1}")
        values[name] = current[len(name) + 2 :]
        i += 1
    for name in _OPTIONAL:
        current = line(i)
        if current is not None and current.startswith(f"{name}: "):
            values[name] = current[len(name) + 2 :]
            i += 1
    resources: tuple[str, ...] | None = None
    if line(i) == "Resources:":
        i += 1
        items: list[str] = []
        while (current := line(i)) is not None and current.startswith("- "):
            if not _URI_RE.fullmatch(current[2:]):
                raise _bad(f"line {i + 1} must be '- <URI>'")
            items.append(current[2:])
            i += 1
        resources = tuple(items)
    if i != count:
        raise _bad(f"unexpected line {i + 1}")

    if not _URI_RE.fullmatch(values["URI"]):
        raise _bad("URI must be an absolute URI")
    if values["Version"] != "1":
        raise _bad("Version must be 1")
    if not _CHAIN_ID_RE.fullmatch(values["Chain ID"]):
        raise _bad("malformed Chain ID")
    if not _NONCE_RE.fullmatch(values["Nonce"]):
        raise BadRequest("malformed nonce")
    for name in ("Issued At", "Expiration Time", "Not Before"):
        if name in values:
            parse_timestamp(values[name])
    request_id = values.get("Request ID")
    if request_id is not None and not _REQUEST_ID_RE.fullmatch(request_id):
        raise _bad("malformed Request ID")
    return SiwxMessage(
        scheme=head["scheme"],
        domain=head["domain"],
        account_type=head["label"],
        address=address,
        statement=statement,
        blank_lines=blank_lines,
        uri=values["URI"],
        version=values["Version"],
        chain_id=values["Chain ID"],
        nonce=values["Nonce"],
        issued_at=values["Issued At"],
        expiration_time=values.get("Expiration Time"),
        not_before=values.get("Not Before"),
        request_id=request_id,
        resources=resources,
    )


def build_message(msg: SiwxMessage) -> str:
    """The message text for ``msg``; the inverse of :func:`parse_message`.

    It does not validate: a caller holding fields from outside parses the result and
    compares (that is how :func:`decode_header` refuses line breaks inside fields).
    """
    head = f"{msg.domain} wants you to sign in with your {msg.account_type} account:"
    if msg.scheme is not None:
        head = f"{msg.scheme}://{head}"
    lines = [head, msg.address, ""]
    if msg.statement is not None:
        lines += [msg.statement, ""]
    elif msg.blank_lines != 1:
        lines.append("")
    lines += [
        f"URI: {msg.uri}",
        f"Version: {msg.version}",
        f"Chain ID: {msg.chain_id}",
        f"Nonce: {msg.nonce}",
        f"Issued At: {msg.issued_at}",
    ]
    if msg.expiration_time is not None:
        lines.append(f"Expiration Time: {msg.expiration_time}")
    if msg.not_before is not None:
        lines.append(f"Not Before: {msg.not_before}")
    if msg.request_id is not None:
        lines.append(f"Request ID: {msg.request_id}")
    if msg.resources is not None:
        lines.append("Resources:")
        lines += [f"- {resource}" for resource in msg.resources]
    return "\n".join(lines)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins; refuse rather than pick one.
        raise _bad_header("duplicate JSON key")
    return obj


def decode_header(value: bytes) -> SiwxPayload:
    """The SIGN-IN-WITH-X header value (SPEC §8) as a payload; 400 when not well formed."""
    value = value.strip(b" \t")
    if not value:
        raise BadRequest("missing SIGN-IN-WITH-X header")
    if len(value) > _MAX_HEADER_CHARS:
        raise BadRequest("SIGN-IN-WITH-X header too large")
    if not _B64_RE.fullmatch(value):
        raise _bad_header("not base64")
    # Standard base64 per SPEC; unpadded and URL-safe spellings are accepted too.
    data = value.rstrip(b"=").translate(bytes.maketrans(b"-_", b"+/"))
    try:
        raw = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        if len(raw) > MAX_HEADER_DECODED_BYTES:
            raise BadRequest("SIGN-IN-WITH-X header too large")
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise _bad_header("not base64 of UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise _bad_header("not a JSON object")
    if "message" in obj:
        message, signature = obj.get("message"), obj.get("signature")
        if not isinstance(message, str) or not isinstance(signature, str):
            raise _bad_header("message and signature must be strings")
        return SiwxPayload(message=parse_message(message), texts=(message,), signature=signature)
    return _decode_x402(obj)


def _text(obj: dict[str, Any], key: str, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _bad_header(f"{key} must be a string")
    return value


def _decode_x402(obj: dict[str, Any]) -> SiwxPayload:
    """The x402 extension form: rebuild the text as x402's formatters do (x402-siwx.md §5.2).

    EVM goes through siwe (``prepare_message``): empty optional times are left out,
    ``requestId``/``resources``/``statement`` only when null, and two empty lines when
    there is no statement. Solana's formatter leaves out every empty field and writes
    one empty line. The other count is kept as a second rendering to try.
    """
    req = {k: _text(obj, k, True) or "" for k in ("domain", "address", "uri", "version")}
    chain = _text(obj, "chainId", True) or ""
    sig_type = _text(obj, "type", True) or ""
    nonce = _text(obj, "nonce", True) or ""
    issued_at = _text(obj, "issuedAt", True) or ""
    signature = _text(obj, "signature", True) or ""
    statement = _text(obj, "statement", False)
    expiration = _text(obj, "expirationTime", False) or None
    not_before = _text(obj, "notBefore", False) or None
    request_id = _text(obj, "requestId", False)
    _text(obj, "signatureScheme", False)  # a hint only; EOA signatures are all we verify
    raw_resources = obj.get("resources")
    resources: tuple[str, ...] | None = None
    if raw_resources is not None:
        if not isinstance(raw_resources, list) or not all(
            isinstance(r, str) for r in raw_resources
        ):
            raise _bad_header("resources must be a list of strings")
        resources = tuple(raw_resources)
    fields = [*req.values(), chain, nonce, issued_at, statement, expiration, not_before]
    if any("\n" in f or "\r" in f for f in (*fields, request_id, *(resources or ())) if f):
        raise _bad("a field holds a line break")
    namespace, _, reference = chain.rpartition(":")
    if namespace == "solana" or (namespace != "eip155" and sig_type == "ed25519"):
        label, blank_lines = "Solana", 1
        statement, request_id = statement or None, request_id or None
        resources = resources or None
    elif namespace == "eip155" or sig_type == "eip191":
        label, blank_lines = "Ethereum", 2
    else:
        raise _bad_header("type must be eip191 or ed25519")
    msg = SiwxMessage(
        domain=req["domain"],
        account_type=label,
        address=req["address"],
        statement=statement,
        blank_lines=blank_lines if statement is None else 2,
        uri=req["uri"],
        version=req["version"],
        chain_id=reference,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration,
        not_before=not_before,
        request_id=request_id,
        resources=resources,
    )
    text = build_message(msg)
    if parse_message(text) != msg:
        raise _bad("a field does not fit its line")
    texts: tuple[str, ...] = (text,)
    if statement is None:
        texts += (build_message(replace(msg, blank_lines=3 - blank_lines)),)
    return SiwxPayload(
        message=msg, texts=texts, signature=signature, chain=chain, signature_type=sig_type
    )
