"""aroutd.target: one normalized path per resource, or 400 ``invalid request path`` (SPEC §6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aroutd.errors import BadRequest
from aroutd.target import Target, normalize_target


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        pytest.param(b"/v1/chat/completions", "/v1/chat/completions", b"", id="plain"),
        pytest.param(b"/v1/models?key=abc&x=1", "/v1/models", b"key=abc&x=1", id="query-kept"),
        pytest.param(b"/v1beta/%6Dodels/gem:x", "/v1beta/models/gem:x", b"", id="pct"),
        pytest.param(b"/%76%31/%7e%2d%2E%5F", "/v1/~-._", b"", id="unreserved-decoded"),
        pytest.param(b"/v1/a%3ab", "/v1/a%3Ab", b"", id="reserved-kept-upper"),
        pytest.param(b"/v1/a%20b", "/v1/a%20b", b"", id="space-kept-encoded"),
        pytest.param(b"/v1/...", "/v1/...", b"", id="three-dots-is-a-name"),
        pytest.param(b"/v1/.well", "/v1/.well", b"", id="dot-prefix-name"),
        pytest.param(b"/", "/", b"", id="root"),
        pytest.param(b"/v1//x", "/v1//x", b"", id="empty-segment-kept"),
        pytest.param(b"/v1/x?a=%2F..", "/v1/x", b"a=%2F..", id="query-not-normalized"),
    ],
)
def test_normalizes(target: bytes, path: str, query: bytes) -> None:
    assert normalize_target(target) == Target(path=path, query=query)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"/v1/../x", id="dotdot"),
        pytest.param(b"/v1/./x", id="dot"),
        pytest.param(b"/v1/..", id="dotdot-end"),
        pytest.param(b"/v1/%2e%2E/x", id="encoded-dotdot"),
        pytest.param(b"/v1/.%2e/x", id="half-encoded-dotdot"),
        pytest.param(b"/v1/%2E", id="encoded-dot"),
        pytest.param(b"/v1/a%2Fb", id="encoded-slash"),
        pytest.param(b"/v1/a%2fb", id="encoded-slash-lower"),
        pytest.param(b"/v1/a%5Cb", id="encoded-backslash"),
        pytest.param(b"/v1/a\\b", id="backslash"),
        pytest.param(b"/v1/a%00b", id="encoded-nul"),
        pytest.param(b"/v1/a%0Ab", id="encoded-lf"),
        pytest.param(b"/v1/a%7Fb", id="encoded-del"),
        pytest.param(b"/v1/a\x00b", id="nul"),
        pytest.param(b"/v1/a\x7fb", id="del"),
        pytest.param(b"/v1/a\xc3\xa9", id="non-ascii"),
        pytest.param(b"/v1/a%zzb", id="bad-hex"),
        pytest.param(b"/v1/a%4", id="short-pct"),
        pytest.param(b"/v1/a%", id="bare-pct"),
        pytest.param(b"/v1/a#frag", id="fragment"),
        pytest.param(b"*", id="asterisk-form"),
        pytest.param(b"example.com:443", id="authority-form"),
        pytest.param(b"http://example.com/v1/x", id="absolute-form"),
        pytest.param(b"", id="empty"),
        pytest.param(b"v1/x", id="no-leading-slash"),
    ],
)
def test_refuses(target: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        normalize_target(target)
    assert info.value.message == "invalid request path" and info.value.status == 400


@given(st.binary(max_size=300))
def test_any_bytes_normalize_or_are_refused(target: bytes) -> None:
    try:
        out = normalize_target(target)
    except BadRequest as exc:
        message = exc.message
        assert message == "invalid request path"
        return
    assert out.path.startswith("/")
    assert "." not in out.path.split("/") and ".." not in out.path.split("/")
    assert normalize_target(out.path.encode()).path == out.path  # idempotent


_UNRESERVED = "ABCXYZabcxyz0189-._~"


@given(
    st.lists(st.text(_UNRESERVED, min_size=1, max_size=8), min_size=1, max_size=6),
    st.data(),
)
def test_every_spelling_of_a_path_is_one_path(segments: list[str], data: st.DataObject) -> None:
    path = "/" + "/".join(segments)
    spelled = "".join(
        f"%{ord(c):02{data.draw(st.sampled_from('xX'))}}"
        if c != "/" and data.draw(st.booleans())
        else c
        for c in path
    )
    try:
        plain = normalize_target(path.encode())
    except BadRequest:  # a segment was "." or "..": every spelling of it is refused too
        with pytest.raises(BadRequest):
            normalize_target(spelled.encode())
        return
    assert normalize_target(spelled.encode()) == plain


@given(st.integers(1, 20_000))
def test_long_and_deep_paths_are_linear(depth: int) -> None:
    out = normalize_target(b"/a" * depth + b"%41" * depth)
    assert out.path == "/a" * depth + "A" * depth
