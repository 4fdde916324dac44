"""aroutd.auth.siwx: the SIWx message parser/builder and the SIGN-IN-WITH-X header decoder."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aroutd.auth.siwx import (
    MAX_HEADER_DECODED_BYTES,
    SiwxMessage,
    SiwxPayload,
    build_message,
    decode_header,
    parse_message,
    parse_timestamp,
)
from aroutd.errors import BadRequest

_A = TypeVar("_A")
_R = TypeVar("_R")
ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
NONCE = "a1b2c3d4e5f67890a1b2c3d4e5f67890"
# arouter-api.md §3.3 (the ARouter Go SDK's text).
AROUTER_TEXT = (
    "api.example.com wants you to sign in with your Ethereum account:\n"
    f"{ADDR}\n\nSign in to ARouter with your wallet\n\n"
    "URI: https://api.example.com/v1/x402/auth\nVersion: 1\nChain ID: 8453\n"
    f"Nonce: {NONCE}\nIssued At: 2026-03-20T12:00:00Z"
)
AROUTER_MSG = SiwxMessage(
    domain="api.example.com",
    account_type="Ethereum",
    address=ADDR,
    statement="Sign in to ARouter with your wallet",
    uri="https://api.example.com/v1/x402/auth",
    chain_id="8453",
    nonce=NONCE,
    issued_at="2026-03-20T12:00:00Z",
)
# x402-siwx.md §6.4, the EVM message (siwe-py prepare_message).
X402_TEXT = (
    "api.example.com wants you to sign in with your Ethereum account:\n"
    f"{ADDR}\n\nSign in to access premium data\n\n"
    "URI: https://api.example.com/premium-data\nVersion: 1\nChain ID: 8453\n"
    f"Nonce: {NONCE}\nIssued At: 2024-01-15T10:30:00.000Z\n"
    "Expiration Time: 2024-01-15T10:35:00.000Z\nResources:\n- https://api.example.com/premium-data"
)


def b64(obj: Any) -> bytes:
    return base64.b64encode(json.dumps(obj).encode())


def or_400(fn: Callable[[_A], _R], arg: _A) -> _R | None:
    """fn(arg), or None when it raised BadRequest (400); any other exception fails the test."""
    try:
        return fn(arg)
    except BadRequest as exc:
        status = exc.status
    assert status == 400
    return None


# --- parse_message ----------------------------------------------------------------------


def test_parse_arouter_text() -> None:
    assert parse_message(AROUTER_TEXT) == AROUTER_MSG


def test_parse_x402_text_with_optional_lines() -> None:
    msg = parse_message(X402_TEXT)
    assert msg.expiration_time == "2024-01-15T10:35:00.000Z"
    assert msg.resources == ("https://api.example.com/premium-data",)
    assert msg.not_before is None
    assert msg.request_id is None
    assert build_message(msg) == X402_TEXT


@pytest.mark.parametrize(
    ("between", "statement", "blank_lines"),
    [
        pytest.param("\n\n", None, 1, id="one-empty-line"),
        pytest.param("\n\n\n", None, 2, id="two-empty-lines"),
        pytest.param("\n\n\n\n", "", 2, id="empty-statement"),
        pytest.param("\n\nHi there\n\n", "Hi there", 2, id="statement"),
    ],
)
def test_lines_between_address_and_uri(
    between: str, statement: str | None, blank_lines: int
) -> None:
    text = AROUTER_TEXT.replace("\n\nSign in to ARouter with your wallet\n\n", between)
    msg = parse_message(text)
    assert (msg.statement, msg.blank_lines) == (statement, blank_lines)
    assert build_message(msg) == text


def test_all_optional_lines_and_scheme() -> None:
    text = (
        "https://api.example.com:8443 wants you to sign in with your Solana account:\n"
        "9C6hybhQ6Aycep9jaUnP6uL9ZYvDjUp1aSkFWPUFJtpj\n\n"
        "URI: https://api.example.com:8443/x\nVersion: 1\n"
        "Chain ID: 5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp\nNonce: 12345678\n"
        "Issued At: 2026-03-20T12:00:00+02:00\nExpiration Time: 2026-03-20T12:00:00.5z\n"
        "Not Before: 2026-03-20t11:00:00-01:30\nRequest ID: \nResources:"
    )
    msg = parse_message(text)
    assert msg == SiwxMessage(
        scheme="https",
        domain="api.example.com:8443",
        account_type="Solana",
        address="9C6hybhQ6Aycep9jaUnP6uL9ZYvDjUp1aSkFWPUFJtpj",
        blank_lines=1,
        uri="https://api.example.com:8443/x",
        chain_id="5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        nonce="12345678",
        issued_at="2026-03-20T12:00:00+02:00",
        expiration_time="2026-03-20T12:00:00.5z",
        not_before="2026-03-20t11:00:00-01:30",
        request_id="",
        resources=(),
    )
    assert build_message(msg) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(AROUTER_TEXT.replace("\n", "\r\n"), "lines must end with LF only", id="crlf"),
        pytest.param(
            AROUTER_TEXT.replace("wallet\n", "wallet\r\n"), "lines must end with LF only", id="cr"
        ),
        pytest.param(AROUTER_TEXT + "\n", "unexpected line 11", id="trailing-newline"),
        pytest.param(AROUTER_TEXT + "\nFoo: bar", "unexpected line 11", id="stray-line-at-end"),
        pytest.param(
            AROUTER_TEXT.replace("Version: 1\n", "Version: 1\n\n"),
            "expected 'Chain ID: ' on line 8",
            id="empty-line-between-fields",
        ),
        pytest.param(
            AROUTER_TEXT.replace("Chain ID: 8453\nNonce", "Nonce"),
            "expected 'Chain ID: ' on line 8",
            id="missing-chain-id",
        ),
        pytest.param(
            AROUTER_TEXT.replace("Version: 1\nChain ID: 8453", "Chain ID: 8453\nVersion: 1"),
            "expected 'Version: ' on line 7",
            id="caip122-order",
        ),
        pytest.param(
            AROUTER_TEXT.replace("Version: 1", "Version: 2"), "Version must be 1", id="v2"
        ),
        pytest.param(
            AROUTER_TEXT.replace("wallet\n\nURI", "wallet\nURI"),
            "the statement must be followed by an empty line",
            id="statement-without-empty-line",
        ),
        pytest.param(
            AROUTER_TEXT.replace("with your wallet", "with your\x07wallet"),
            "the statement must be one line of printable text",
            id="control-char-in-statement",
        ),
        pytest.param(
            AROUTER_TEXT.replace("wallet\n\nURI", "wallet\nsecond line\n\nURI"),
            "the statement must be followed by an empty line",
            id="two-line-statement",
        ),
        pytest.param(
            AROUTER_TEXT.replace("wants you", "asks you"),
            "line 1 must be '<domain> wants you to sign in with your <chain> account:'",
            id="bad-first-line",
        ),
        pytest.param(
            AROUTER_TEXT.replace("api.example.com wants", "user@api.example.com wants"),
            "line 1 must be '<domain> wants you to sign in with your <chain> account:'",
            id="userinfo-in-domain",
        ),
        pytest.param(
            AROUTER_TEXT.replace(ADDR, f"{ADDR} x"),
            "line 2 must be the address",
            id="space-in-addr",
        ),
        pytest.param(
            AROUTER_TEXT.replace(f"{ADDR}\n\n", f"{ADDR}\nx\n"), "line 3 must be empty", id="line-3"
        ),
        pytest.param(
            AROUTER_TEXT.split("\n")[0] + "\n" + ADDR + "\n", "expected 'URI: ' on line 4", id="cut"
        ),
        pytest.param(
            AROUTER_TEXT.replace("URI: https://api.example.com/v1/x402/auth", "URI: /v1/x402/auth"),
            "URI must be an absolute URI",
            id="relative-uri",
        ),
        pytest.param(
            AROUTER_TEXT.replace("Chain ID: 8453", "Chain ID: 84 53"),
            "malformed Chain ID",
            id="chain-id",
        ),
        pytest.param(
            AROUTER_TEXT.replace("2026-03-20T12:00:00Z", "2026-03-20 12:00:00Z"),
            "timestamps must be RFC 3339",
            id="issued-at-space",
        ),
        pytest.param(
            AROUTER_TEXT.replace("2026-03-20T12:00:00Z", "2026-02-30T12:00:00Z"),
            "timestamps must be RFC 3339",
            id="issued-at-feb-30",
        ),
        pytest.param(
            AROUTER_TEXT.replace("2026-03-20T12:00:00Z", "2026-03-20T12:00:00"),
            "timestamps must be RFC 3339",
            id="issued-at-no-offset",
        ),
        pytest.param(
            AROUTER_TEXT + "\nResources:\n- not a uri",
            "line 12 must be '- <URI>'",
            id="bad-resource",
        ),
        pytest.param(
            AROUTER_TEXT + "\nRequest ID: a b", "malformed Request ID", id="space-in-request-id"
        ),
        pytest.param(
            AROUTER_TEXT.replace("\nIssued At", "\nIssued At: x\nIssued At"),
            "unexpected line 11",
            id="duplicated-field",
        ),
        pytest.param("x" * (MAX_HEADER_DECODED_BYTES + 1), "too long", id="too-long"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_message(text)
    assert info.value.status == 400
    assert info.value.message == f"invalid SIWx message: {message}"


@pytest.mark.parametrize(
    "nonce",
    [
        pytest.param("abc1234", id="seven-chars"),
        pytest.param("abcd-1234", id="dash"),
        pytest.param("abcdéfghij", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_nonce(nonce: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_message(AROUTER_TEXT.replace(NONCE, nonce))
    assert (info.value.status, info.value.message) == (400, "malformed nonce")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-03-20T12:00:00Z", datetime(2026, 3, 20, 12, tzinfo=UTC), id="z"),
        pytest.param(
            "2026-03-20T12:00:00.123Z",
            datetime(2026, 3, 20, 12, 0, 0, 123000, tzinfo=UTC),
            id="millis",
        ),
        pytest.param(
            "2026-03-20T12:00:00.1234567891Z",
            datetime(2026, 3, 20, 12, 0, 0, 123456, tzinfo=UTC),
            id="nanos-truncated",
        ),
        pytest.param("2026-03-20T14:30:00+02:30", datetime(2026, 3, 20, 12, tzinfo=UTC), id="off"),
        pytest.param("2026-03-20t12:00:00z", datetime(2026, 3, 20, 12, tzinfo=UTC), id="lower"),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-20T12:00:60Z",
        "2026-03-20T12:00:00+24:00",
        "2026-13-01T00:00:00Z",
        "20260320T120000Z",
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(BadRequest, match="timestamps must be RFC 3339"):
        parse_timestamp(text)


# --- hypothesis: build/parse round trip, arbitrary input --------------------------------

_printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=30
).filter(lambda s: s.isprintable() and not s.startswith("URI: "))
_ascii_token = st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True)
_uri = st.from_regex(r"(https?|urn|ipfs):[\x21-\x7e]{1,30}", fullmatch=True)
_stamp = st.builds(
    lambda d, ms: d.isoformat(timespec="milliseconds" if ms else "seconds").replace("+00:00", "Z"),
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.booleans(),
)


@st.composite
def messages(draw: st.DrawFn) -> SiwxMessage:
    statement = draw(st.none() | _printable)
    return SiwxMessage(
        scheme=draw(st.none() | st.sampled_from(["http", "https", "x-y.z+1"])),
        domain=draw(st.from_regex(r"[a-z0-9.\-]{1,20}(:[0-9]{1,5})?|\[::1\]", fullmatch=True)),
        account_type=draw(
            st.sampled_from(["Ethereum", "Solana"]) | st.from_regex(r"[A-Za-z0-9]+", fullmatch=True)
        ),
        address=draw(_ascii_token),
        statement=statement,
        blank_lines=draw(st.sampled_from([1, 2])) if statement is None else 2,
        uri=draw(_uri),
        chain_id=draw(st.from_regex(r"[-_A-Za-z0-9]{1,20}(:[-_A-Za-z0-9]{1,20})?", fullmatch=True)),
        nonce=draw(st.from_regex(r"[A-Za-z0-9]{8,40}", fullmatch=True)),
        issued_at=draw(_stamp),
        expiration_time=draw(st.none() | _stamp),
        not_before=draw(st.none() | _stamp),
        request_id=draw(st.none() | st.from_regex(r"[\x21-\x7e]{0,20}", fullmatch=True)),
        resources=draw(st.none() | st.lists(_uri, max_size=3).map(tuple)),
    )


@settings(max_examples=200, deadline=None)
@given(messages())
def test_build_then_parse_round_trips(msg: SiwxMessage) -> None:
    assert parse_message(build_message(msg)) == msg


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages(),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["\n", "\r", " ", ":", "x", ""])),
        max_size=3,
    ),
)
def test_mutated_text_parses_exactly_or_is_400(
    msg: SiwxMessage, edits: list[tuple[int, str]]
) -> None:
    text = build_message(msg)
    for at, insert in edits:
        at %= len(text) + 1
        # An empty insert deletes a character instead.
        text = text[:at] + insert + text[at + (0 if insert else 1) :]
    parsed = or_400(parse_message, text)
    if parsed is not None:
        # Whatever is accepted is rebuilt byte for byte: nothing is lost or normalised.
        assert build_message(parsed) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_parses_or_is_400(text: str) -> None:
    or_400(parse_message, text)


# --- decode_header ----------------------------------------------------------------------

X402_FIELDS: dict[str, Any] = {
    "domain": "api.example.com",
    "address": ADDR,
    "uri": "https://api.example.com/premium-data",
    "version": "1",
    "chainId": "eip155:8453",
    "type": "eip191",
    "nonce": NONCE,
    "issuedAt": "2024-01-15T10:30:00.000Z",
    "statement": "Sign in to access premium data",
    "expirationTime": "2024-01-15T10:35:00.000Z",
    "resources": ["https://api.example.com/premium-data"],
    "signature": "0xabc",
}


def test_decode_arouter_form() -> None:
    payload = decode_header(b64({"message": AROUTER_TEXT, "signature": "0xsig"}))
    assert payload == SiwxPayload(message=AROUTER_MSG, texts=(AROUTER_TEXT,), signature="0xsig")


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda b: base64.b64encode(b), id="standard"),
        pytest.param(lambda b: base64.b64encode(b).rstrip(b"="), id="unpadded"),
        pytest.param(lambda b: base64.urlsafe_b64encode(b), id="urlsafe"),
        pytest.param(lambda b: b" " + base64.b64encode(b) + b"\t", id="surrounding-space"),
    ],
)
def test_decode_base64_spellings(encode: Any) -> None:
    # "?>" in the JSON gives "+" / "/" in standard base64, so the alphabets differ here.
    raw = json.dumps({"message": AROUTER_TEXT, "signature": "?>?>?>"}).encode()
    assert decode_header(encode(raw)).signature == "?>?>?>"


def test_decode_x402_form_rebuilds_siwe_text() -> None:
    payload = decode_header(b64(X402_FIELDS))
    assert payload.texts == (X402_TEXT,)
    assert payload.chain == "eip155:8453"
    assert payload.signature_type == "eip191"
    assert payload.signature == "0xabc"


@pytest.mark.parametrize(
    ("fields", "between", "other"),
    [
        pytest.param({"chainId": "eip155:8453"}, "\n\n\n", "\n\n", id="evm-two-then-one"),
        pytest.param(
            {"chainId": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "type": "ed25519"},
            "\n\n",
            "\n\n\n",
            id="solana-one-then-two",
        ),
    ],
)
def test_decode_x402_form_without_statement(
    fields: dict[str, Any], between: str, other: str
) -> None:
    obj = {k: v for k, v in X402_FIELDS.items() if k != "statement"} | fields
    payload = decode_header(b64(obj))
    assert len(payload.texts) == 2
    assert f"{ADDR}{between}URI: " in payload.texts[0]
    assert f"{ADDR}{other}URI: " in payload.texts[1]


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        pytest.param(
            {"requestId": "", "resources": []},
            ["\nRequest ID: \n", "\nResources:"],
            [],
            id="evm-keeps-empty-request-id-and-resources",
        ),
        pytest.param({"statement": ""}, [f"{ADDR}\n\n\n\nURI: "], [], id="evm-empty-statement"),
        pytest.param(
            {
                "chainId": "solana:x",
                "type": "ed25519",
                "statement": "",
                "requestId": "",
                "resources": [],
            },
            [f"{ADDR}\n\nURI: "],
            ["Request ID", "Resources"],
            id="solana-drops-empty-fields",
        ),
        pytest.param(
            {"expirationTime": "", "notBefore": None},
            [],
            ["Expiration Time", "Not Before"],
            id="empty-times",
        ),
    ],
)
def test_decode_x402_form_empty_fields_like_x402(
    changes: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    text = decode_header(b64(X402_FIELDS | changes)).texts[0]
    for part in present:
        assert part in text
    for part in absent:
        assert part not in text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(b"", "missing SIGN-IN-WITH-X header", id="empty"),
        pytest.param(b"  ", "missing SIGN-IN-WITH-X header", id="blank"),
        pytest.param(b"A" * 12000, "SIGN-IN-WITH-X header too large", id="oversized"),
        pytest.param(b"not base64!", "invalid SIGN-IN-WITH-X header: not base64", id="not-b64"),
        pytest.param(b"QQ=A", "invalid SIGN-IN-WITH-X header: not base64", id="inner-padding"),
        pytest.param(
            b"QUJD" * 3 + b"Q",
            "invalid SIGN-IN-WITH-X header: not base64 of UTF-8 JSON",
            id="bad-length",
        ),
        pytest.param(
            base64.b64encode(b'{"message": "\xff"}'),
            "invalid SIGN-IN-WITH-X header: not base64 of UTF-8 JSON",
            id="not-utf8",
        ),
        pytest.param(
            base64.b64encode(b"{not json"),
            "invalid SIGN-IN-WITH-X header: not base64 of UTF-8 JSON",
            id="not-json",
        ),
        pytest.param(b64([1, 2]), "invalid SIGN-IN-WITH-X header: not a JSON object", id="array"),
        pytest.param(
            base64.b64encode(b'{"message": "a", "message": "b", "signature": "s"}'),
            "invalid SIGN-IN-WITH-X header: duplicate JSON key",
            id="duplicate-key",
        ),
        pytest.param(
            b64({"message": AROUTER_TEXT}),
            "invalid SIGN-IN-WITH-X header: message and signature must be strings",
            id="no-signature",
        ),
        pytest.param(
            b64({"message": 5, "signature": "s"}),
            "invalid SIGN-IN-WITH-X header: message and signature must be strings",
            id="message-not-string",
        ),
        pytest.param(
            b64({"message": "hello", "signature": "s"}),
            "invalid SIWx message: line 1 must be "
            "'<domain> wants you to sign in with your <chain> account:'",
            id="message-not-siwx",
        ),
        pytest.param(
            b64({k: v for k, v in X402_FIELDS.items() if k != "nonce"}),
            "invalid SIGN-IN-WITH-X header: nonce must be a string",
            id="x402-missing-nonce",
        ),
        pytest.param(
            b64(X402_FIELDS | {"resources": "https://x"}),
            "invalid SIGN-IN-WITH-X header: resources must be a list of strings",
            id="x402-resources-string",
        ),
        pytest.param(
            b64(X402_FIELDS | {"statement": 7}),
            "invalid SIGN-IN-WITH-X header: statement must be a string",
            id="x402-statement-number",
        ),
        pytest.param(
            b64(X402_FIELDS | {"chainId": "cosmos:hub", "type": "secp256k1"}),
            "invalid SIGN-IN-WITH-X header: type must be eip191 or ed25519",
            id="x402-unknown-type",
        ),
        pytest.param(
            b64(X402_FIELDS | {"statement": "hi\n\nURI: https://evil.example"}),
            "invalid SIWx message: a field holds a line break",
            id="x402-statement-injection",
        ),
        pytest.param(
            b64(X402_FIELDS | {"statement": "hi\r"}),
            "invalid SIWx message: a field holds a line break",
            id="x402-statement-cr",
        ),
        pytest.param(
            b64(X402_FIELDS | {"uri": "https://api.example.com/x\nVersion: 1"}),
            "invalid SIWx message: a field holds a line break",
            id="x402-uri-injection",
        ),
        pytest.param(
            b64(X402_FIELDS | {"nonce": "short"}), "malformed nonce", id="x402-short-nonce"
        ),
        pytest.param(
            b64(X402_FIELDS | {"statement": "URI: https://api.example.com/"}),
            "invalid SIWx message: expected 'Version: ' on line 5",
            id="x402-statement-looks-like-uri",
        ),
        pytest.param(
            b64(X402_FIELDS | {"resources": ["https://a", "b\nc"]}),
            "invalid SIWx message: a field holds a line break",
            id="x402-resource-injection",
        ),
        pytest.param(
            b64(X402_FIELDS | {"version": "2"}),
            "invalid SIWx message: Version must be 1",
            id="x402-v2",
        ),
    ],
)
def test_decode_header_rejects(value: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_header(value)
    assert (info.value.status, info.value.message) == (400, message)


def test_deep_nesting_is_400() -> None:
    # Whether json gives up (RecursionError) or parses a list depends on the interpreter's
    # recursion limit, which other imported libraries raise; both answers are a 400.
    with pytest.raises(BadRequest) as info:
        decode_header(base64.b64encode(b"[" * 4000 + b"]" * 4000))
    assert info.value.message in (
        "invalid SIGN-IN-WITH-X header: not base64 of UTF-8 JSON",
        "invalid SIGN-IN-WITH-X header: not a JSON object",
    )


def test_decode_header_limit_is_8_kib_decoded() -> None:
    filler = "x" * 100
    small = {"message": AROUTER_TEXT, "signature": "s", "pad": filler}
    pad = MAX_HEADER_DECODED_BYTES - len(json.dumps(small)) + len(filler)
    at_limit = json.dumps(small | {"pad": "x" * pad}).encode()
    assert len(at_limit) == MAX_HEADER_DECODED_BYTES
    assert decode_header(base64.b64encode(at_limit)).signature == "s"
    for extra in (1, 3):
        over = json.dumps(small | {"pad": "x" * (pad + extra)}).encode()
        with pytest.raises(BadRequest, match="SIGN-IN-WITH-X header too large"):
            decode_header(base64.b64encode(over).rstrip(b"="))


def test_x402_payload_fields_are_the_message() -> None:
    payload = decode_header(
        b64(X402_FIELDS | {"notBefore": "2024-01-15T10:29:00Z", "requestId": "r1"})
    )
    assert payload.message == replace(
        parse_message(X402_TEXT), not_before="2024-01-15T10:29:00Z", request_id="r1"
    )


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*X402_FIELDS, "message", "signature", "notBefore", "requestId"]),
        _json_values | st.sampled_from(list(X402_FIELDS.values())),
    )
)
def test_arbitrary_json_objects_decode_or_are_400(obj: dict[str, Any]) -> None:
    or_400(decode_header, b64(X402_FIELDS | obj))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_are_400(value: bytes) -> None:
    for candidate in (value, base64.b64encode(value)):
        or_400(decode_header, candidate)
