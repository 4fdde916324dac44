"""aroutd.routing: routes, providers and the request's model (SPEC §2, §5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.config.parse import (
    Config,
    KeysConfig,
    Price,
    RouteConfig,
    ServerConfig,
    StateConfig,
    WalletConfig,
    X402Config,
)
from aroutd.errors import BadRequest
from aroutd.routing import (
    RouteMatch,
    known_providers,
    match_route,
    model_from_body,
    model_from_multipart,
    model_from_path,
    request_model,
    resolve,
    rewrite_body_model,
    rewrite_path_model,
)

GEMINI = RouteConfig(pattern="/v1*/models/*:*", upstream="google", provider="google")
OPENAI = RouteConfig(prefix="/v1/", upstream="openai", provider="openai")
MESSAGES = RouteConfig(prefix="/v1/messages", upstream="anthropic", provider="anthropic")
CATCH_ALL = RouteConfig(
    prefix="/openai/", upstream="openai", provider="openai", strip_prefix="/openai"
)
SHADOW = RouteConfig(prefix="/v1/", upstream="second", provider="second")
ROUTES = (GEMINI, OPENAI, MESSAGES, CATCH_ALL, SHADOW)

REWRITE = RouteConfig(
    prefix="/v1/",
    upstream="openai",
    provider="openai",
    rewrite_model=True,
    model_upstreams={"anthropic": "anthropic_compat"},
)
PROVIDERS = frozenset({"openai", "anthropic", "google"})


@pytest.mark.parametrize(
    ("path", "route"),
    [
        pytest.param("/v1beta/models/gemini-pro:generateContent", GEMINI, id="gemini-v1beta"),
        pytest.param("/v1/models/gemini-pro:streamGenerateContent", GEMINI, id="pattern-first"),
        pytest.param("/v1/chat/completions", OPENAI, id="prefix"),
        pytest.param("/v1/messages", MESSAGES, id="longest-prefix"),
        pytest.param("/v1/messages/count_tokens", MESSAGES, id="longest-prefix-deeper"),
        pytest.param("/v1/models", OPENAI, id="no-colon-no-pattern"),
        pytest.param("/v1/chat?x=/v1/models/a:b", OPENAI, id="query-ignored"),
        pytest.param("/openai/v1/chat/completions", CATCH_ALL, id="catch-all"),
        pytest.param("/v2/chat", None, id="unrouted"),
        pytest.param("/v1", None, id="prefix-needs-slash"),
        pytest.param("/V1/chat", None, id="case-sensitive"),
    ],
)
def test_match_route(path: str, route: RouteConfig | None) -> None:
    assert match_route(ROUTES, path) is route


def test_match_route_pattern_order() -> None:
    a = RouteConfig(pattern="/x/*", upstream="a", provider="a")
    b = RouteConfig(pattern="/x/y*", upstream="b", provider="b")
    assert match_route((a, b), "/x/yz") is a
    assert match_route((b, a), "/x/yz") is b


def _config(routes: tuple[RouteConfig, ...], pricing: dict[str, Price]) -> Config:
    tmp = Path("/nonexistent")
    return Config(
        path=tmp / "aroutd.toml",
        server=ServerConfig(),
        keys=KeysConfig(file=tmp / "keys.toml"),
        state=StateConfig(path=tmp / "db"),
        wallet=WalletConfig(jwt_secret_file=tmp / "jwt"),
        x402=X402Config(),
        upstreams={},
        routes=routes,
        pricing=pricing,
    )


def test_known_providers() -> None:
    cfg = _config(
        (GEMINI, OPENAI, REWRITE),
        {"deepseek/deepseek-chat": Price(), "mistral/a/b": Price(), "noslash": Price()},
    )
    assert known_providers(cfg) == frozenset(
        {"google", "openai", "anthropic", "deepseek", "mistral"}
    )


@pytest.mark.parametrize(
    ("body", "model"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b'{"model":"gpt-4o"}', "gpt-4o", id="simple"),
        pytest.param(b' \n{"model" : "openai/gpt-4o"}\n', "openai/gpt-4o", id="whitespace"),
        pytest.param(b'{"x":{"model":"b"},"model":"a"}', "a", id="nested-model-ignored"),
        pytest.param(b'{"x":{"model":"b","model":"c"}}', None, id="nested-duplicate-fine"),
        pytest.param(b'{"messages":[]}', None, id="no-model"),
        pytest.param(b'[{"model":"a"}]', None, id="array"),
        pytest.param(b'"model"', None, id="string"),
        pytest.param(b"null", None, id="null"),
        pytest.param(b'{"mod\\u0065l":"a"}', "a", id="escaped-key"),
        pytest.param('{"model":"modèle"}'.encode(), "modèle", id="utf8"),
    ],
)
def test_model_from_body(body: bytes, model: str | None) -> None:
    assert model_from_body(body) == model


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b'{"model":"a","model":"b"}', "duplicate model field", id="duplicate"),
        pytest.param(b'{"model":"a","model":"a"}', "duplicate model field", id="duplicate-same"),
        pytest.param(
            b'{"model":"a","mod\\u0065l":"b"}', "duplicate model field", id="duplicate-escaped"
        ),
        pytest.param(b'{"model":1}', "invalid model field", id="number"),
        pytest.param(b'{"model":null}', "invalid model field", id="null-model"),
        pytest.param(b'{"model":["a"]}', "invalid model field", id="list-model"),
        pytest.param(b'{"model":""}', "invalid model field", id="empty-model"),
        pytest.param(b'{"model":"\\ud800"}', "invalid model field", id="lone-surrogate"),
        pytest.param(b'{"model":', "invalid JSON body", id="truncated"),
        pytest.param(b"{'model':'a'}", "invalid JSON body", id="single-quotes"),
        pytest.param(b'{"model":"a"} x', "invalid JSON body", id="trailing-garbage"),
        pytest.param(b'{"model":"\xff"}', "invalid JSON body", id="invalid-utf8"),
        pytest.param(b'\xef\xbb\xbf{"model":"a"}', "invalid JSON body", id="bom"),
        pytest.param('{"model":"a"}'.encode("utf-16"), "invalid JSON body", id="utf16"),
        pytest.param(b'{"n":NaN,"model":"a"}', "invalid JSON body", id="nan"),
        pytest.param(b"[" * 100_000, "invalid JSON body", id="deep-nesting"),
        pytest.param(b"1" * 5000, "invalid JSON body", id="huge-int"),
    ],
)
def test_model_from_body_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        model_from_body(body)
    assert exc.value.status == 400
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("path", "model"),
    [
        pytest.param("/v1beta/models/gemini-pro:generateContent", "gemini-pro", id="v1beta"),
        pytest.param(
            "/v1/models/gemini-1.5-flash:streamGenerateContent", "gemini-1.5-flash", id="v1"
        ),
        pytest.param("/v1alpha/models/g:countTokens", "g", id="v1alpha"),
        pytest.param("/v1beta/models/google%2Fgemini:generateContent", "google/gemini", id="pct"),
        pytest.param("/v1beta/models/google/gemini:generateContent", "google/gemini", id="slash"),
        pytest.param("/v1beta/models/a:b:generateContent", "a:b", id="last-colon"),
        pytest.param("/v1beta/models/g:embedContent?alt=sse", "g", id="query-ignored"),
        pytest.param("/v1beta/models", None, id="list"),
        pytest.param("/v1beta/models/gemini-pro", None, id="get-model"),
        pytest.param("/v1beta/models/:generateContent", None, id="empty-model"),
        pytest.param("/v1beta/models/g:", None, id="empty-action"),
        pytest.param("/v2/models/g:generateContent", None, id="not-v1"),
        pytest.param("/x/v1beta/models/g:generateContent", None, id="not-stripped"),
        pytest.param("/v1/chat/completions", None, id="openai"),
    ],
)
def test_model_from_path(path: str, model: str | None) -> None:
    assert model_from_path(path) == model


def test_model_from_path_bad_percent_encoding() -> None:
    with pytest.raises(BadRequest, match="invalid model field"):
        model_from_path("/v1beta/models/%ff:generateContent")


@pytest.mark.parametrize(
    ("path", "body", "model"),
    [
        pytest.param("/v1beta/models/g:generateContent", b"{}", "g", id="path"),
        pytest.param("/v1/chat/completions", b'{"model":"m"}', "m", id="body"),
        pytest.param("/v1beta/models/g:generateContent", b'{"model":"g"}', "g", id="both-same"),
        pytest.param("/v1/models", b"", None, id="none"),
    ],
)
def test_request_model(path: str, body: bytes, model: str | None) -> None:
    assert request_model(path, body) == model


def test_request_model_conflict() -> None:
    with pytest.raises(BadRequest, match="conflicting model fields"):
        request_model("/v1beta/models/gemini-ultra:generateContent", b'{"model":"gemini-flash"}')


def _match(route: RouteConfig, path: str, model: str | None, **kw: str | None) -> RouteMatch:
    fields: dict[str, str | None] = {
        "upstream": route.upstream,
        "provider": route.provider,
        "model": model,
        "canonical_model": None,
        "forward_model": None,
        "upstream_path": path,
    }
    fields.update(kw)
    return RouteMatch(route=route, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("route", "path", "model", "expected"),
    [
        pytest.param(
            OPENAI,
            "/v1/chat/completions",
            None,
            _match(OPENAI, "/v1/chat/completions", None),
            id="no-model",
        ),
        pytest.param(
            OPENAI,
            "/v1/chat/completions",
            "gpt-4o",
            _match(OPENAI, "/v1/chat/completions", "gpt-4o", canonical_model="openai/gpt-4o"),
            id="bare",
        ),
        pytest.param(
            OPENAI,
            "/v1/chat/completions",
            "anthropic/claude-3",
            _match(
                OPENAI,
                "/v1/chat/completions",
                "anthropic/claude-3",
                provider="anthropic",
                canonical_model="anthropic/claude-3",
            ),
            id="prefix-no-rewrite",
        ),
        pytest.param(
            OPENAI,
            "/v1/chat/completions",
            "meta-llama/llama-3",
            _match(
                OPENAI,
                "/v1/chat/completions",
                "meta-llama/llama-3",
                canonical_model="openai/meta-llama/llama-3",
            ),
            id="unknown-prefix",
        ),
        pytest.param(
            REWRITE,
            "/v1/chat/completions",
            "openai/gpt-4o",
            _match(
                REWRITE,
                "/v1/chat/completions",
                "openai/gpt-4o",
                canonical_model="openai/gpt-4o",
                forward_model="gpt-4o",
            ),
            id="rewrite",
        ),
        pytest.param(
            REWRITE,
            "/v1/chat/completions",
            "gpt-4o",
            _match(REWRITE, "/v1/chat/completions", "gpt-4o", canonical_model="openai/gpt-4o"),
            id="rewrite-bare-untouched",
        ),
        pytest.param(
            REWRITE,
            "/v1/messages",
            "anthropic/claude-3",
            _match(
                REWRITE,
                "/v1/messages",
                "anthropic/claude-3",
                upstream="anthropic_compat",
                provider="anthropic",
                canonical_model="anthropic/claude-3",
                forward_model="claude-3",
            ),
            id="model-upstreams",
        ),
        pytest.param(
            CATCH_ALL,
            "/openai/v1/chat/completions",
            "gpt-4o",
            _match(
                CATCH_ALL,
                "/v1/chat/completions",
                "gpt-4o",
                canonical_model="openai/gpt-4o",
            ),
            id="strip-prefix",
        ),
        pytest.param(
            CATCH_ALL,
            "/openai",
            None,
            _match(CATCH_ALL, "/", None),
            id="strip-prefix-to-root",
        ),
    ],
)
def test_resolve(route: RouteConfig, path: str, model: str | None, expected: RouteMatch) -> None:
    assert resolve(route, path, model, PROVIDERS) == expected


def test_resolve_gemini_path_model_rewritten() -> None:
    route = RouteConfig(
        pattern="/v1*/models/*:*", upstream="google", provider="google", rewrite_model=True
    )
    path = "/v1beta/models/google%2Fgemini-pro:generateContent"
    got = resolve(route, path, model_from_path(path), PROVIDERS)
    assert got.canonical_model == "google/gemini-pro"
    assert got.forward_model == "gemini-pro"
    assert got.upstream_path == "/v1beta/models/gemini-pro:generateContent"


@pytest.mark.parametrize(
    ("path", "model", "expected"),
    [
        pytest.param(
            "/v1beta/models/a:generateContent",
            "b/c",
            "/v1beta/models/b%2Fc:generateContent",
            id="encoded",
        ),
        pytest.param("/v1/chat/completions", "x", "/v1/chat/completions", id="not-gemini"),
    ],
)
def test_rewrite_path_model(path: str, model: str, expected: str) -> None:
    assert rewrite_path_model(path, model) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"model":"openai/gpt-4o"}', b'{"model":"gpt-4o"}', id="simple"),
        pytest.param(
            b' {"x" : {"model":"keep"} ,"model" :\t"openai/gpt-4o" , "t":1.50000000000000000001}\n',
            b' {"x" : {"model":"keep"} ,"model" :\t"gpt-4o" , "t":1.50000000000000000001}\n',
            id="bytes-exact-elsewhere",
        ),
        pytest.param(
            b'{"a":"\xc3\xa9","model":"x"}', b'{"a":"\xc3\xa9","model":"gpt-4o"}', id="utf8"
        ),
        pytest.param(b'{"messages":[]}', b'{"messages":[]}', id="no-model"),
        pytest.param(b"[1]", b"[1]", id="not-object"),
        pytest.param(b"", b"", id="empty"),
        pytest.param(b"{}", b"{}", id="empty-object"),
    ],
)
def test_rewrite_body_model(body: bytes, expected: bytes) -> None:
    assert rewrite_body_model(body, "gpt-4o") == expected


def test_rewrite_body_model_invalid() -> None:
    with pytest.raises(BadRequest, match="invalid JSON body"):
        rewrite_body_model(b'{"model":"a",}', "b")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["model", "x", "messages"]), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=64), _json_values.map(lambda v: json.dumps(v).encode())))
def test_model_from_body_fuzz(body: bytes) -> None:
    model, message = None, None
    try:
        model = model_from_body(body)
    except BadRequest as exc:
        message = exc.message
    assert message in (None, "invalid JSON body", "invalid model field", "duplicate model field")
    if model is not None:
        assert json.loads(body)["model"] == model
        rewritten = rewrite_body_model(body, "new")
        assert model_from_body(rewritten) == "new"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.tuples(
            st.sampled_from(["/v1", "/v1beta", "/v2", "/v1beta/x"]),
            st.text(max_size=20),
            st.sampled_from([":generateContent", ":", "", ":a:b"]),
        ).map(lambda t: f"{t[0]}/models/{t[1]}{t[2]}"),
    )
)
def test_model_from_path_fuzz(path: str) -> None:
    model, message = None, None
    try:
        model = model_from_path(path)
    except BadRequest as exc:
        message = exc.message
    assert message in (None, "invalid model field")
    if model is not None:
        assert model
        assert "/models/" in path


CT = "multipart/form-data; boundary=XyZ"


def _form(*parts: bytes, end: bytes = b"--XyZ--\r\n") -> bytes:
    return b"".join(b"--XyZ\r\n" + p + b"\r\n" for p in parts) + end


MODEL_PART = b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1'
FILE_PART = (
    b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\nRIFF\r\n--XyY\r\n\r\n\x00\xff"
)


@pytest.mark.parametrize(
    ("body", "content_type", "model"),
    [
        pytest.param(_form(MODEL_PART, FILE_PART), CT, "whisper-1", id="model-first"),
        pytest.param(_form(FILE_PART, MODEL_PART), CT, "whisper-1", id="model-last"),
        pytest.param(_form(FILE_PART), CT, None, id="no-model"),
        pytest.param(
            _form(b"content-disposition: FORM-DATA; name=model\r\n\r\nopenai/whisper-1"),
            CT,
            "openai/whisper-1",
            id="case-and-token-name",
        ),
        pytest.param(
            _form(MODEL_PART),
            'Multipart/Form-Data; charset=utf-8; boundary="XyZ"',
            "whisper-1",
            id="quoted-boundary",
        ),
        pytest.param(_form(MODEL_PART, end=b"--XyZ--"), CT, "whisper-1", id="no-final-crlf"),
        pytest.param(_form(MODEL_PART, end=b"--XyZ--\r\nepilogue"), CT, "whisper-1", id="epilogue"),
        pytest.param(
            _form(b'Content-Disposition: form-data; name="model2"\r\n\r\nx'),
            CT,
            None,
            id="other-name",
        ),
    ],
)
def test_model_from_multipart(body: bytes, content_type: str, model: str | None) -> None:
    assert request_model("/v1/audio/transcriptions", body, content_type=content_type) == model
    assert request_model("/v1/a", body, content_type=content_type.encode()) == model


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(_form(MODEL_PART, MODEL_PART), "duplicate model field", id="duplicate"),
        pytest.param(_form(MODEL_PART, end=b""), "invalid multipart body", id="no-close"),
        pytest.param(
            _form(MODEL_PART + b"\r\n--XyZx"),
            "invalid multipart body",
            id="delimiter-inside-content",  # RFC 2046 §5.1.1: must not occur
        ),
        pytest.param(b"preamble\r\n" + _form(MODEL_PART), "invalid multipart body", id="preamble"),
        pytest.param(
            _form(MODEL_PART).replace(b"\r\n", b"\n"), "invalid multipart body", id="bare-lf"
        ),
        pytest.param(
            _form(MODEL_PART, end=b"--XyZ--\r\n--XyZ\r\n" + MODEL_PART + b"\r\n--XyZ--"),
            "invalid multipart body",
            id="part-after-close",
        ),
        pytest.param(
            _form(b'Content-Disposition: form-data; name="mo\\del"\r\n\r\nx'),
            "invalid multipart body",
            id="backslash-name",
        ),
        pytest.param(
            _form(b"Content-Disposition: form-data; name*=utf-8''model\r\n\r\nx"),
            "invalid multipart body",
            id="extended-name",
        ),
        pytest.param(
            _form(
                b'Content-Disposition: form-data; name="x"\r\n'
                b'Content-Disposition: form-data; name="model"\r\n\r\nx'
            ),
            "invalid multipart body",
            id="two-dispositions",
        ),
        pytest.param(
            _form(b'Content-Disposition: form-data; name="model"; name="x"\r\n\r\nx'),
            "invalid multipart body",
            id="two-names",
        ),
        pytest.param(
            _form(b'Content-Disposition: form-data;\r\n name="model"\r\n\r\nx'),
            "invalid multipart body",
            id="obs-fold",
        ),
        pytest.param(
            _form(b'Content-Disposition: attachment; name="model"\r\n\r\nx'),
            "invalid multipart body",
            id="not-form-data",
        ),
        pytest.param(
            _form(b"Content-Type: text/plain\r\n\r\nx"), "invalid multipart body", id="no-cd"
        ),
        pytest.param(_form(b"\r\nx"), "invalid multipart body", id="no-headers"),
        pytest.param(
            _form(b'Content-Disposition: form-data; name="model"\r\n\r\n\xff'),
            "invalid model field",
            id="model-not-utf8",
        ),
        pytest.param(
            _form(b'Content-Disposition: form-data; name="model"\r\n\r\n'),
            "invalid model field",
            id="model-empty",
        ),
    ],
)
def test_model_from_multipart_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        request_model("/v1/audio/transcriptions", body, content_type=CT)
    assert exc.value.message == message


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("multipart/form-data", id="no-boundary"),
        pytest.param("multipart/form-data; boundary=", id="empty-boundary"),
        pytest.param('multipart/form-data; boundary=""', id="empty-quoted-boundary"),
        pytest.param("multipart/form-data; boundary=" + "a" * 71, id="long-boundary"),
        pytest.param("multipart/form-data; boundary=XyZ; boundary=XyZ", id="two-boundaries"),
        pytest.param("multipart/form-data; boundary=é", id="non-ascii-boundary"),
    ],
)
def test_model_from_multipart_bad_content_type(content_type: str) -> None:
    # The body uses the boundary the header names, so only the header is at fault.
    boundary = content_type.partition("boundary=")[2].partition(";")[0].strip('"')
    body = _form(MODEL_PART).replace(b"XyZ", boundary.encode())
    with pytest.raises(BadRequest, match="invalid multipart body"):
        model_from_multipart(body, content_type)


def test_model_from_multipart_70_char_boundary() -> None:
    body = _form(MODEL_PART).replace(b"XyZ", b"a" * 70)
    assert model_from_multipart(body, "multipart/form-data; boundary=" + "a" * 70) == "whisper-1"


def test_non_multipart_bodies_are_json() -> None:
    with pytest.raises(BadRequest, match="invalid JSON body"):
        request_model("/v1/chat/completions", b"model=gpt-4o", content_type=b"text/plain")
    assert request_model("/v1/x", b'{"model":"m"}', content_type=b"application/json") == "m"


def test_multipart_matches_httpx() -> None:
    """What the OpenAI SDK sends (through httpx) for audio.transcriptions.create."""
    import httpx

    req = httpx.Request(
        "POST",
        "http://proxy/v1/audio/transcriptions",
        data={"model": "gpt-4o-transcribe", "language": "en"},
        files={"file": ("a.wav", b"RIFF\r\n\r\n--", "audio/wav")},
    )
    body = req.read()
    assert request_model(req.url.path, body, content_type=req.headers["content-type"]) == (
        "gpt-4o-transcribe"
    )


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.lists(
            st.sampled_from([MODEL_PART, FILE_PART, b"x", b"\r\n", b"Content-Disposition: a"])
        ).map(lambda parts: _form(*parts)),
    )
)
def test_model_from_multipart_fuzz(body: bytes) -> None:
    model, message = None, None
    try:
        model = model_from_multipart(body, CT)
    except BadRequest as exc:
        message = exc.message
    assert message in (
        None,
        "invalid multipart body",
        "invalid model field",
        "duplicate model field",
    )
    assert model in (None, "whisper-1")


def _reference_model(body: bytes) -> str | None:
    """model_from_body's contract, computed the slow obvious way (one hook for every body)."""
    top: list[list[tuple[str, object]]] = []

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        top.append(pairs)
        return dict(pairs)

    doc = json.loads(body.decode("utf-8"), object_pairs_hook=hook)
    if not isinstance(doc, dict):
        return None
    if sum(1 for key, _ in top[-1] if key == "model") > 1:
        return "<duplicate>"
    return doc.get("model")


_KEYS = st.sampled_from(["model", "mod\\u0065l", "messages", "x", "\\u006dodel"])


@settings(max_examples=200)
@given(st.lists(st.tuples(_KEYS, st.text(min_size=1, max_size=5)), max_size=4))
def test_model_fast_path_agrees_with_the_hooked_parse(pairs: list[tuple[str, str]]) -> None:
    """The C-decoder fast path never misses a duplicate "model", even spelled with \\u escapes."""
    body = ("{" + ",".join(f'"{k}":{json.dumps(v)}' for k, v in pairs) + "}").encode()
    expected = _reference_model(body)
    try:
        got: str | None = model_from_body(body)
    except BadRequest as exc:
        got = "<duplicate>" if exc.message == "duplicate model field" else f"<{exc.message}>"
    assert got == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            _form(MODEL_PART.replace(b"whisper-1", b"openai/whisper-1"), FILE_PART),
            _form(MODEL_PART, FILE_PART),
            id="model-first",
        ),
        pytest.param(
            _form(FILE_PART, MODEL_PART.replace(b"whisper-1", b"openai/whisper-1")),
            _form(FILE_PART, MODEL_PART),
            id="model-last",
        ),
        pytest.param(_form(FILE_PART), _form(FILE_PART), id="no-model-unchanged"),
    ],
)
def test_rewrite_multipart_model(body: bytes, expected: bytes) -> None:
    # audio uploads on a rewrite_model route: the form field, not a JSON body, is rewritten
    assert rewrite_body_model(body, "whisper-1", content_type=CT) == expected
    assert model_from_multipart(expected, CT) in ("whisper-1", None)


def test_rewrite_multipart_model_from_httpx() -> None:
    import httpx

    req = httpx.Request(
        "POST",
        "http://proxy/v1/audio/transcriptions",
        data={"model": "openai/whisper-1"},
        files={"file": ("a.wav", b"RIFF\r\n\r\n--", "audio/wav")},
    )
    ct = req.headers["content-type"]
    out = rewrite_body_model(req.read(), "whisper-1", content_type=ct)
    assert request_model(req.url.path, out, content_type=ct) == "whisper-1"
    assert out.replace(b"whisper-1", b"openai/whisper-1", 1) == req.read()
