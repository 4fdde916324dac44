"""aroutd.framing: request smuggling checks (SPEC §12)."""

from __future__ import annotations

import re

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import BadRequest, HeaderTooLarge, HTTPError, NotImplementedCoding
from aroutd.framing import check_header_bytes, check_request_framing

Headers = list[tuple[bytes, bytes]]
CL = b"content-length"
# RFC 9110 §5.5 field-value, restricted to ASCII.
_FIELD_VALUE_RE = re.compile(rb"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?")
TE = b"transfer-encoding"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="none"),
        pytest.param([(CL, b"0")], id="zero"),
        pytest.param([(CL, b"42")], id="length"),
        pytest.param([(CL, b"42"), (CL, b"42")], id="repeated-same"),
        pytest.param([(CL, b"42, 42")], id="list-same"),
        pytest.param([(CL, b"0042")], id="leading-zeros"),
        pytest.param([(CL, b"9" * 20)], id="20-digits"),
        pytest.param([(TE, b"chunked")], id="chunked"),
        pytest.param([(TE, b"Chunked")], id="chunked-case"),
        pytest.param([(b"Transfer-Encoding", b" chunked ")], id="name-case-ows"),
    ],
)
def test_framing_ok(headers: Headers) -> None:
    check_request_framing(headers)


@pytest.mark.parametrize(
    ("headers", "error", "status", "message"),
    [
        pytest.param(
            [(CL, b"5"), (TE, b"chunked")],
            BadRequest,
            400,
            "invalid request framing",
            id="cl-and-te",
        ),
        pytest.param(
            [(TE, b"chunked"), (b"Content-Length", b"5")],
            BadRequest,
            400,
            "invalid request framing",
            id="te-and-cl",
        ),
        pytest.param(
            [(CL, b"5"), (TE, b"gzip")], BadRequest, 400, "invalid request framing", id="cl-te-gzip"
        ),
        pytest.param(
            [(CL, b"5"), (CL, b"6")], BadRequest, 400, "invalid request framing", id="two"
        ),
        pytest.param([(CL, b"5, 6")], BadRequest, 400, "invalid request framing", id="list"),
        pytest.param([(CL, b"5,")], BadRequest, 400, "invalid request framing", id="list-empty"),
        pytest.param(
            [(CL, b"05"), (CL, b"5")], BadRequest, 400, "invalid request framing", id="05"
        ),
        pytest.param([(CL, b"")], BadRequest, 400, "invalid request framing", id="empty"),
        pytest.param([(CL, b"-1")], BadRequest, 400, "invalid request framing", id="negative"),
        pytest.param([(CL, b"+1")], BadRequest, 400, "invalid request framing", id="plus"),
        pytest.param([(CL, b"0x10")], BadRequest, 400, "invalid request framing", id="hex"),
        pytest.param([(CL, b"1 2")], BadRequest, 400, "invalid request framing", id="space"),
        pytest.param([(CL, b"\xd9\xa1")], BadRequest, 400, "invalid request framing", id="unicode"),
        pytest.param([(CL, b"9" * 21)], BadRequest, 400, "invalid request framing", id="21-digits"),
        pytest.param(
            [(TE, b"gzip")], NotImplementedCoding, 501, "unsupported transfer coding", id="gzip"
        ),
        pytest.param(
            [(TE, b"gzip, chunked")],
            NotImplementedCoding,
            501,
            "unsupported transfer coding",
            id="gzip-chunked",
        ),
        pytest.param(
            [(TE, b"chunked, chunked")],
            NotImplementedCoding,
            501,
            "unsupported transfer coding",
            id="chunked-twice",
        ),
        pytest.param(
            [(TE, b"chunked"), (TE, b"chunked")],
            NotImplementedCoding,
            501,
            "unsupported transfer coding",
            id="two-lines",
        ),
        pytest.param(
            [(TE, b"identity")],
            NotImplementedCoding,
            501,
            "unsupported transfer coding",
            id="identity",
        ),
        pytest.param(
            [(TE, b"")], NotImplementedCoding, 501, "unsupported transfer coding", id="te-empty"
        ),
        pytest.param(
            [(TE, b"xchunked")],
            NotImplementedCoding,
            501,
            "unsupported transfer coding",
            id="xchunked",
        ),
    ],
)
def test_framing_errors(
    headers: Headers, error: type[HTTPError], status: int, message: str
) -> None:
    with pytest.raises(error) as exc:
        check_request_framing(headers)
    assert exc.value.status == status
    assert exc.value.message == message
    assert exc.value.close is True


@pytest.mark.parametrize(
    ("total", "limit", "raises"),
    [
        pytest.param(100, 16384, False, id="small"),
        pytest.param(16384, 16384, False, id="at-limit"),
        pytest.param(16385, 16384, True, id="over"),
    ],
)
def test_check_header_bytes(total: int, limit: int, raises: bool) -> None:
    if not raises:
        check_header_bytes(total, limit)
        return
    with pytest.raises(HeaderTooLarge) as exc:
        check_header_bytes(total, limit)
    assert (exc.value.status, exc.value.message, exc.value.close) == (
        431,
        "request header too large",
        True,
    )


_legal_values = st.text(alphabet="0123456789chunkedgzipCHUNKED, \t", max_size=12).map(
    lambda v: v.strip(" \t").encode()
)  # legal field values (RFC 9110 §5.5): no leading or trailing whitespace


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([CL, TE, b"Content-Length", b"x-other"]),
            st.one_of(st.binary(max_size=12), _legal_values),
        ),
        max_size=4,
    )
)
def test_framing_fuzz(headers: Headers) -> None:
    """Either our closing error, or a head h11 also accepts, framed one way only."""
    error: HTTPError | None = None
    try:
        check_request_framing(headers)
    except (BadRequest, NotImplementedCoding) as exc:
        error = exc
    if error is not None:
        assert error.close
        return
    names = [n.lower() for n, _ in headers]
    assert not (CL in names and TE in names)
    assert names.count(TE) <= 1
    if all(_FIELD_VALUE_RE.fullmatch(v) for _, v in headers):
        h11.Request(method="POST", target="/", headers=[(b"host", b"x"), *headers])
