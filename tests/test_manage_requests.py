"""aroutd.manage.requests: management bodies and queries, every problem a 400 naming the field."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import BadRequest
from aroutd.manage.requests import (
    CREATE_FIELDS,
    PATCH_FIELDS,
    ListQuery,
    key_hash,
    parse_body,
    parse_list_query,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def create(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    raw = (
        body if isinstance(body, bytes) else (json.dumps(body) if isinstance(body, dict) else body)
    )
    return parse_body(
        raw if isinstance(raw, bytes) else raw.encode(), allowed=CREATE_FIELDS, now=NOW, create=True
    )


def patch(body: dict[str, Any] | str) -> dict[str, Any]:
    raw = json.dumps(body) if isinstance(body, dict) else body
    return parse_body(raw.encode(), allowed=PATCH_FIELDS, now=NOW)


def test_a_full_create_body() -> None:
    got = create(
        {
            "name": "production-backend",
            "allowed_providers": ["openai", "anthropic", "openai"],
            "allowed_models": ["gpt-5.4", "anthropic/*"],
            "limit": 150,
            "limit_reset": "monthly",
            "expires_at": "2027-12-31T23:59:59Z",
            "rpm_limit": 60,
            "rpd_limit": 1000,
            "tpm_limit": 100000,
        }
    )
    assert got == {
        "name": "production-backend",
        "allowed_providers": ("openai", "anthropic"),  # each once, in order
        "allowed_models": ("gpt-5.4", "anthropic/*"),
        "limit": 150.0,
        "limit_reset": "monthly",
        "expires_at": datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC),
        "rpm_limit": 60,
        "rpd_limit": 1000,
        "tpm_limit": 100000,
    }


def test_only_given_fields_come_back_and_null_clears() -> None:
    assert patch({"disabled": True}) == {"disabled": True}
    assert patch({"limit": None, "limit_reset": None, "rpm_limit": None}) == {
        "limit": None,
        "limit_reset": None,
        "rpm_limit": None,
    }
    assert create({"name": "x", "expires_at": None}) == {"name": "x", "expires_at": None}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name: missing (required)"),
        ({"name": ""}, "name: must be a string of 1 to 200 characters"),
        ({"name": "x" * 201}, "name: must be a string of 1 to 200 characters"),
        ({"name": 5}, "name: must be a string of 1 to 200 characters"),
        ({"name": "x", "bogus": 1}, "bogus: unknown field"),
        ({"name": "x", "disabled": True}, "disabled: unknown field"),  # not a create field
        ({"name": "x", "limit": -1}, "limit: must be a number >= 0 or null"),
        ({"name": "x", "limit": "5"}, "limit: must be a number >= 0 or null"),
        ({"name": "x", "limit": True}, "limit: must be a number >= 0 or null"),
        ({"name": "x", "limit": 10**400}, "limit: must be a number >= 0 or null"),
        (
            {"name": "x", "limit_reset": "never"},
            'limit_reset: must be "daily", "weekly", "monthly" or null',
        ),
        ({"name": "x", "rpm_limit": 0}, "rpm_limit: must be a positive integer or null"),
        ({"name": "x", "rpm_limit": 1.5}, "rpm_limit: must be a positive integer or null"),
        ({"name": "x", "tpm_limit": 10**13}, "tpm_limit: must be a positive integer or null"),
        ({"name": "x", "rpd_limit": True}, "rpd_limit: must be a positive integer or null"),
        (
            {"name": "x", "allowed_models": "gpt-4o"},
            "allowed_models: must be an array of at most 100 strings of 1 to 200 characters",
        ),
        (
            {"name": "x", "allowed_models": [""]},
            "allowed_models: must be an array of at most 100 strings of 1 to 200 characters",
        ),
        (
            {"name": "x", "allowed_providers": ["a"] * 101},
            "allowed_providers: must be an array of at most 100 strings of 1 to 200 characters",
        ),
        (
            {"name": "x", "allowed_providers": None},
            "allowed_providers: must be an array of at most 100 strings of 1 to 200 characters",
        ),
        (
            {"name": "x", "expires_at": "2027-01-01"},
            "expires_at: must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
        ),
        (
            {"name": "x", "expires_at": "2027-01-01T00:00:00"},
            "expires_at: must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
        ),
        (
            {"name": "x", "expires_at": "2027-02-30T00:00:00Z"},
            "expires_at: must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
        ),
        (
            {"name": "x", "expires_at": 1700000000},
            "expires_at: must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
        ),
        ({"name": "x", "expires_at": "2026-12-01T12:00:00Z"}, "expires_at: must be in the future"),
        (
            {"name": "x", "expires_at": "2020-01-01T00:00:00+02:00"},
            "expires_at: must be in the future",
        ),
    ],
)
def test_bad_create_fields_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        create(body)
    assert caught.value.message == message
    assert caught.value.status == 400


def test_rfc3339_offsets_and_fractions_are_read() -> None:
    got = create({"name": "x", "expires_at": "2027-01-01t02:00:00.5+02:00"})
    assert got["expires_at"] == datetime(2027, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "request body must be a JSON object"),
        (b"[]", "request body must be a JSON object"),
        (b'"name"', "request body must be a JSON object"),
        (b"{", "request body must be a JSON object"),
        (b'{"name": "x", "limit": NaN}', "request body must be a JSON object"),
        (b'{"name": "x", "limit": Infinity}', "request body must be a JSON object"),
        (b"\xff\xfe", "request body must be a JSON object"),
        (b'{"name": "x", "limit": 1, "limit": 1000}', "limit: given twice"),
        (b'{"name": "a", "name": "a"}', "name: given twice"),
        (
            b'{"name": "x", "rpm_limit": 1' + b"0" * 5000 + b"}",
            "request body must be a JSON object",
        ),
        (
            b'{"name": "x", "allowed_models": ' + b"[" * 100000 + b"]" * 100000 + b"}",
            "request body must be a JSON object",
        ),
    ],
)
def test_bodies_that_are_not_one_object_of_distinct_fields(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        create(raw)
    assert caught.value.message == message


def test_a_quoted_field_name_is_printable_and_short() -> None:
    with pytest.raises(BadRequest) as caught:
        create({"name": "x", "\n" + "k" * 500: 1})
    message = caught.value.message
    assert message.startswith("?kkk") and message.endswith("…: unknown field")
    assert len(message) < 100


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_are_fields_or_a_400(raw: bytes) -> None:
    with contextlib.suppress(BadRequest):
        create(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(sorted(CREATE_FIELDS | {"x"})), json_values, max_size=6))
@settings(max_examples=300)
def test_any_json_object_is_checked_fields_or_a_400(body: dict[str, Any]) -> None:
    try:
        got = create(body)
    except BadRequest as exc:
        problem = exc.message
    else:
        assert set(got) <= CREATE_FIELDS and "name" in got
        return
    assert problem.split(":")[0] in CREATE_FIELDS | {"x", "request body must be a JSON object"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", ListQuery()),
        (
            b"include_disabled=true&offset=5&page_size=10",
            ListQuery(offset=5, page_size=10, include_disabled=True),
        ),
        (b"include_disabled=FALSE", ListQuery()),
        (b"include_disabled=1&page_token=abc", ListQuery(include_disabled=True)),
        (b"page_size=500", ListQuery(page_size=500)),
        (b"offset=0&offset=0", ListQuery()),
    ],
)
def test_list_queries(query: bytes, expected: ListQuery) -> None:
    assert parse_list_query(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (b"page_size=0", "page_size: must be an integer from 1 to 500"),
        (b"page_size=501", "page_size: must be an integer from 1 to 500"),
        (b"page_size=ten", "page_size: must be an integer from 1 to 500"),
        (b"offset=-1", "offset: must be an integer >= 0"),
        (b"offset=" + b"9" * 50, "offset: must be an integer >= 0"),
        (b"offset=%D9%A3", "offset: must be an integer >= 0"),  # Arabic-Indic digit three
        (b"include_disabled=yes", "include_disabled: must be true or false"),
        (b"offset=1&offset=2", "offset: given twice"),
    ],
)
def test_bad_list_queries_name_the_parameter(query: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_list_query(query)
    assert caught.value.message == message


def test_key_hash_takes_64_hex_digits_in_any_case() -> None:
    digest = bytes(range(32))
    assert key_hash(digest.hex()) == digest
    assert key_hash(digest.hex().upper()) == digest
    for bad in ("", digest.hex()[:-1], digest.hex() + "0", "g" * 64, "lr_live_" + "0" * 48):
        assert key_hash(bad) is None
