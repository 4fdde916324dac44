"""aroutd.credentials: the one credential of a request (SPEC §4)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.credentials import (
    Credential,
    credential_kind,
    extract_credential,
    redact_query_key,
    strip_query_key,
)
from aroutd.errors import Unauthorized

API = "lr_live_" + "0123456789abcdef" * 3
API2 = "lr_live_" + "f" * 48
MGMT = "lr_mgmt_" + "a1" * 24
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

INVALID_AUTH = "missing or invalid Authorization header"
CONFLICT = "conflicting credentials"


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param(API, "api", id="api"),
        pytest.param(MGMT, "management", id="management"),
        pytest.param(JWT, "jwt", id="jwt"),
        pytest.param("lr_live_" + "A" * 48, "unknown", id="api-uppercase-hex"),
        pytest.param("lr_live_" + "a" * 47, "unknown", id="api-short"),
        pytest.param("lr_live_" + "a" * 49, "unknown", id="api-long"),
        pytest.param(API + "\n", "unknown", id="api-trailing-newline"),
        pytest.param("lr_mgmt_" + "g" * 48, "unknown", id="mgmt-not-hex"),
        pytest.param("lr_test_" + "a" * 48, "unknown", id="other-prefix"),
        pytest.param("eyJa.b", "unknown", id="jwt-two-segments"),
        pytest.param("eyJa.b.c.d", "unknown", id="jwt-four-segments"),
        pytest.param("eyJa.b.", "unknown", id="jwt-empty-signature"),
        pytest.param("abc.def.ghi", "unknown", id="jwt-not-eyJ"),
        pytest.param("eyJ+.b.c", "unknown", id="jwt-not-base64url"),
        pytest.param("sk-proj-123", "unknown", id="openai-key"),
    ],
)
def test_credential_kind(value: str, kind: str) -> None:
    assert credential_kind(value) == kind


@pytest.mark.parametrize(
    ("headers", "query", "value", "method"),
    [
        pytest.param(h(("authorization", f"Bearer {API}")), b"", API, "bearer", id="bearer"),
        pytest.param(h(("authorization", f"bearer {API}")), b"", API, "bearer", id="bearer-lower"),
        pytest.param(h(("authorization", f"BEARER {API}")), b"", API, "bearer", id="bearer-upper"),
        pytest.param(h(("authorization", f"Bearer   {API}")), b"", API, "bearer", id="many-spaces"),
        pytest.param(h(("x-api-key", MGMT)), b"", MGMT, "x-api-key", id="x-api-key"),
        pytest.param(h(("x-goog-api-key", API)), b"", API, "x-goog-api-key", id="x-goog-api-key"),
        pytest.param([], f"key={API}".encode(), API, "query", id="query"),
        pytest.param([], f"alt=sse&key={API}".encode(), API, "query", id="query-second"),
        pytest.param([], f"key={API}&key={API}".encode(), API, "query", id="query-repeated-same"),
        pytest.param([], b"key=lr_live_%30" + API[9:].encode(), API, "query", id="pct-value"),
        pytest.param([], f"%6Bey={API}".encode(), API, "query", id="pct-name"),
        pytest.param(
            h(("authorization", f"Bearer {API}"), ("x-api-key", API)),
            f"key={API}".encode(),
            API,
            "bearer",
            id="same-everywhere-bearer-first",
        ),
        pytest.param(
            h(("x-goog-api-key", API), ("x-api-key", API)),
            b"",
            API,
            "x-api-key",
            id="spec-order-not-header-order",
        ),
        pytest.param(
            h(("authorization", f"Bearer {API}"), ("authorization", f"bearer {API}")),
            b"",
            API,
            "bearer",
            id="two-same-authorization",
        ),
        pytest.param(h(("authorization", f"Bearer {JWT}")), b"", JWT, "bearer", id="jwt"),
        pytest.param(
            h(("x-api-key", ""), ("authorization", f"Bearer {API}")),
            b"key=",
            API,
            "bearer",
            id="empty-sources-absent",
        ),
        pytest.param(h(("x-api-key", f"  {API} ")), b"", API, "x-api-key", id="ows-stripped"),
    ],
)
def test_extract(headers: list[tuple[bytes, bytes]], query: bytes, value: str, method: str) -> None:
    cred = extract_credential(headers, query, allow_query_key=True)
    assert cred == Credential(
        kind=credential_kind(value),
        value=value,
        method=method,  # type: ignore[arg-type]
        digest=hashlib.sha256(value.encode()).digest(),
    )


@pytest.mark.parametrize(
    ("headers", "query", "websocket"),
    [
        pytest.param([], b"", False, id="nothing"),
        pytest.param(h(("x-api-key", "")), b"key=&key", False, id="empty-values"),
        pytest.param(h(("cookie", f"key={API}")), b"", False, id="cookie-is-not-a-source"),
        pytest.param(
            h(("sec-websocket-protocol", f"openai-insecure-api-key.{API}")),
            b"",
            False,
            id="subprotocol-without-websocket",
        ),
        pytest.param([], b"monkey=1&keys=2", False, id="other-params"),
        pytest.param(
            h(("sec-websocket-protocol", "realtime, openai-insecure-api-key.")),
            b"",
            True,
            id="subprotocol-empty-key",
        ),
    ],
)
def test_extract_none(headers: list[tuple[bytes, bytes]], query: bytes, websocket: bool) -> None:
    assert extract_credential(headers, query, allow_query_key=True, websocket=websocket) is None


def test_extract_websocket_subprotocol() -> None:
    headers = h(
        ("sec-websocket-protocol", f"realtime, openai-insecure-api-key.{API}"),
        ("sec-websocket-protocol", "openai-beta.realtime-v1"),
    )
    cred = extract_credential(headers, b"", allow_query_key=True, websocket=True)
    assert cred is not None
    assert (cred.kind, cred.value, cred.method) == ("api", API, "websocket")


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        pytest.param(h(("authorization", "Bearer  ")), b"", INVALID_AUTH, id="bearer-empty"),
        pytest.param(h(("authorization", "Bearer")), b"", INVALID_AUTH, id="bearer-alone"),
        pytest.param(h(("authorization", "")), b"", INVALID_AUTH, id="empty-header"),
        pytest.param(h(("authorization", API)), b"", INVALID_AUTH, id="no-scheme"),
        pytest.param(h(("authorization", "Basic dXNlcjpwdw==")), b"", INVALID_AUTH, id="basic"),
        pytest.param(h(("authorization", f"Bearer {API} x")), b"", INVALID_AUTH, id="two-tokens"),
        pytest.param(h(("authorization", f"Bearer\t{API}")), b"", INVALID_AUTH, id="tab"),
        pytest.param(h(("authorization", f"Bearer {API}!")), b"", INVALID_AUTH, id="not-b64token"),
        pytest.param(
            h(("authorization", "Basic dXNlcjpwdw=="), ("x-api-key", API)),
            b"",
            INVALID_AUTH,
            id="bad-authorization-never-skipped",
        ),
        pytest.param(
            h(("authorization", f"Bearer {API}"), ("authorization", f"Bearer {API2}")),
            b"",
            INVALID_AUTH,
            id="two-different-authorization",
        ),
        pytest.param(
            h(("authorization", f"Bearer {JWT}"), ("x-api-key", API)),
            b"",
            CONFLICT,
            id="jwt-and-api-key",
        ),
        pytest.param(
            h(("authorization", f"Bearer {API}"), ("x-goog-api-key", API2)),
            b"",
            CONFLICT,
            id="bearer-and-goog",
        ),
        pytest.param(h(("x-api-key", API), ("x-api-key", API2)), b"", CONFLICT, id="two-x-api-key"),
        pytest.param([], f"key={API}&key={API2}".encode(), CONFLICT, id="query-repeated-differ"),
        pytest.param(
            h(("x-api-key", API)), f"key={API2}".encode(), CONFLICT, id="header-and-query"
        ),
        pytest.param(
            h(("x-api-key", API)), f"key={API.upper()}".encode(), CONFLICT, id="case-matters"
        ),
    ],
)
def test_extract_errors(headers: list[tuple[bytes, bytes]], query: bytes, message: str) -> None:
    with pytest.raises(Unauthorized) as exc:
        extract_credential(headers, query, allow_query_key=True)
    assert exc.value.status == 401
    assert exc.value.message == message


def test_websocket_conflict() -> None:
    headers = h(
        ("authorization", f"Bearer {API}"),
        ("sec-websocket-protocol", f"realtime, openai-insecure-api-key.{API2}"),
    )
    with pytest.raises(Unauthorized, match=CONFLICT):
        extract_credential(headers, b"", allow_query_key=True, websocket=True)
    # Without the upgrade the subprotocol header is not a source at all.
    cred = extract_credential(headers, b"", allow_query_key=True)
    assert cred is not None
    assert cred.value == API


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(f"key={API}".encode(), id="key"),
        pytest.param(b"key=", id="empty-key"),
        pytest.param(b"a=1&%6bey=x", id="encoded-name"),
    ],
)
def test_query_key_disallowed(query: bytes) -> None:
    headers = h(("authorization", f"Bearer {API}"))
    with pytest.raises(Unauthorized) as exc:
        extract_credential(headers, query, allow_query_key=False)
    assert exc.value.message == INVALID_AUTH


def test_query_key_disallowed_other_params_fine() -> None:
    cred = extract_credential(h(("x-api-key", API)), b"alt=sse&keys=1", allow_query_key=False)
    assert cred is not None
    assert cred.method == "x-api-key"


def test_secret_not_in_repr() -> None:
    cred = extract_credential(h(("x-api-key", API)), b"", allow_query_key=True)
    assert cred is not None
    assert API not in repr(cred)
    assert repr(cred.digest) not in repr(cred)
    assert "x-api-key" in repr(cred)


def test_error_messages_hold_no_secret() -> None:
    with pytest.raises(Unauthorized) as exc:
        extract_credential(h(("x-api-key", API), ("x-api-key", API2)), b"", allow_query_key=True)
    assert API not in str(exc.value)
    assert API not in repr(exc.value)


@pytest.mark.parametrize(
    ("query", "stripped"),
    [
        pytest.param(b"", b"", id="empty"),
        pytest.param(b"key=x", b"", id="only-key"),
        pytest.param(b"key=x&alt=sse", b"alt=sse", id="first"),
        pytest.param(b"alt=sse&key=x", b"alt=sse", id="last"),
        pytest.param(b"a=%2F1&key=x&b=c+d&key=y", b"a=%2F1&b=c+d", id="repeated-bytes-exact"),
        pytest.param(b"%6Bey=x&k+ey=1", b"k+ey=1", id="encoded-name"),
        pytest.param(b"key&keys=1&monkey=2", b"keys=1&monkey=2", id="no-equals"),
        pytest.param(b"a=1&&b", b"a=1&&b", id="empty-parts-kept"),
    ],
)
def test_strip_query_key(query: bytes, stripped: bytes) -> None:
    assert strip_query_key(query) == stripped


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        pytest.param(b"/v1/models", "/v1/models", id="no-query"),
        pytest.param(
            f"/v1beta/models?key={API}&alt=sse".encode(),
            "/v1beta/models?key=REDACTED&alt=sse",
            id="key",
        ),
        pytest.param(b"/p?a=1&%6bey=s&key", "/p?a=1&%6bey=REDACTED&key=REDACTED", id="variants"),
        pytest.param(b"/p?", "/p?", id="empty-query"),
    ],
)
def test_redact_query_key(target: bytes, logged: str) -> None:
    assert redact_query_key(target) == logged


_header_names = st.sampled_from(
    [b"authorization", b"x-api-key", b"x-goog-api-key", b"sec-websocket-protocol", b"other"]
)
_header_values = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"Bearer ", b"bearer ", b"openai-insecure-api-key."]).flatmap(
        lambda p: st.binary(max_size=30).map(lambda v: p + v)
    ),
    st.sampled_from([f"Bearer {API}".encode(), API.encode(), JWT.encode(), b""]),
)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=5),
    query=st.one_of(
        st.binary(max_size=40),
        st.lists(
            st.sampled_from([b"key=", b"%6bey=", b"key", b"a=1", f"key={API}".encode(), b"%ff"])
        ).map(b"&".join),
    ),
    allow=st.booleans(),
    websocket=st.booleans(),
)
def test_extract_fuzz(
    headers: list[tuple[bytes, bytes]], query: bytes, allow: bool, websocket: bool
) -> None:
    cred, message = None, None
    try:
        cred = extract_credential(headers, query, allow_query_key=allow, websocket=websocket)
    except Unauthorized as exc:
        message = exc.message
    assert message in (None, INVALID_AUTH, CONFLICT)
    if cred is not None:
        assert cred.value
        assert cred.kind == credential_kind(cred.value)
        assert cred.digest == hashlib.sha256(cred.value.encode("latin-1")).digest()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_strip_query_key_fuzz(query: bytes) -> None:
    stripped = strip_query_key(query)
    # No key parameter is left (allow_query_key=False would raise on one) ...
    assert extract_credential([], stripped, allow_query_key=False) is None
    assert strip_query_key(stripped) == stripped
    # ... and what is left is the other parameters, byte-exact and in order.
    remaining = iter(query.split(b"&"))
    assert all(part in remaining for part in (stripped.split(b"&") if stripped else []))
