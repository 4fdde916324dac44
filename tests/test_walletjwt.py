"""aroutd.auth.walletjwt: wallet JWT issue/verify, rotation, the cache, the secret file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aroutd.auth.walletjwt import WalletTokens, key_id
from aroutd.errors import ConfigError, Unauthorized
from aroutd.shell.files import load_or_create_secret, read_secret

SECRET = b"s" * 32
OLD = b"o" * 40
ISS = "https://api.example.com"
SUB = "eip155:8453:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
T0 = NOW.timestamp()


def tokens(**kw: Any) -> WalletTokens:
    args: dict[str, Any] = {"secret": SECRET, "issuer": ISS, "ttl_s": 3600} | kw
    return WalletTokens(**args)


def forge(claims: dict[str, Any], *, key: bytes = SECRET, alg: str = "HS256", **hdr: Any) -> str:
    headers = {k: v for k, v in ({"kid": key_id(key)} | hdr).items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def hand_signed(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: bytes = SECRET,
    digest: Any = hashlib.sha256,
) -> str:
    """A correctly HMAC'd token with any header (PyJWT refuses to encode some)."""
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    mac = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def good_claims(**kw: Any) -> dict[str, Any]:
    base = {
        "iss": ISS,
        "sub": SUB,
        "aud": "aroutd",
        "iat": int(T0),
        "exp": int(T0) + 60,
        "jti": "j",
    }
    return base | kw


def reject(t: WalletTokens, token: str, now: float = T0) -> None:
    with pytest.raises(Unauthorized) as info:
        t.verify(token, now)
    assert (info.value.status, info.value.message) == (401, "invalid or expired token")


def test_issue_claims_and_header() -> None:
    token = tokens().issue(SUB, NOW)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": hashlib.sha256(SECRET).hexdigest()[:16]}
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="aroutd", options={"verify_exp": False}
    )
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert (claims["iss"], claims["sub"], claims["aud"]) == (ISS, SUB, "aroutd")
    assert (claims["iat"], claims["exp"]) == (int(T0), int(T0) + 3600)
    assert len(claims["jti"]) == 32
    assert token.startswith("eyJhbGciOiJIUzI1NiIs")  # the prefix in ARouter's docs (§1.1)


def test_verify_round_trip_and_expiry() -> None:
    t = tokens()
    token = t.issue(SUB, NOW)
    assert t.verify(token, T0) == SUB
    assert t.verify(token, T0 + 3599.9) == SUB
    reject(t, token, T0 + 3600)


def test_jti_differs_between_tokens() -> None:
    t = tokens()
    assert t.issue(SUB, NOW) != t.issue(SUB, NOW)


def test_rotation_previous_secret_still_verifies() -> None:
    old = tokens(secret=OLD).issue(SUB, NOW)
    rotated = tokens(previous=[OLD])
    assert rotated.verify(old, T0) == SUB
    # New tokens are signed with the current secret.
    assert jwt.get_unverified_header(rotated.issue(SUB, NOW))["kid"] == key_id(SECRET)
    reject(tokens(), old)  # dropped from the list: no longer accepted


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(forge(good_claims(iss="https://evil.example")), id="wrong-iss"),
        pytest.param(forge(good_claims(aud="other")), id="wrong-aud"),
        pytest.param(forge(good_claims(exp=int(T0))), id="expired-at-exp"),
        pytest.param(forge(good_claims(sub=42)), id="sub-not-string"),
        pytest.param(forge(good_claims(sub="")), id="sub-empty"),
        pytest.param(forge(good_claims(exp="soon")), id="exp-not-number"),
        pytest.param(forge({k: v for k, v in good_claims().items() if k != "jti"}), id="no-jti"),
        pytest.param(forge({k: v for k, v in good_claims().items() if k != "exp"}), id="no-exp"),
        pytest.param(forge({k: v for k, v in good_claims().items() if k != "iat"}), id="no-iat"),
        pytest.param(forge(good_claims(), key=b"x" * 32, kid=key_id(SECRET)), id="wrong-key"),
        pytest.param(forge(good_claims(), kid="0123456789abcdef"), id="unknown-kid"),
        pytest.param(forge(good_claims(), kid=None), id="no-kid"),
        pytest.param(hand_signed({"alg": "HS256", "kid": 5}, good_claims()), id="kid-number"),
        pytest.param(
            hand_signed({"alg": "HS512", "kid": key_id(SECRET)}, good_claims()), id="alg-lies"
        ),
        pytest.param(
            hand_signed(
                {"alg": "HS512", "kid": key_id(SECRET)}, good_claims(), digest=hashlib.sha512
            ),
            id="hs512",
        ),
        pytest.param(
            _b64({"alg": "none", "kid": key_id(SECRET)}) + "." + _b64(good_claims()) + ".",
            id="alg-none",
        ),
        pytest.param("eyJ.eyJ.sig", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("a" * 5000, id="huge"),
    ],
)
def test_verify_rejects(token: str) -> None:
    reject(tokens(), token)


def test_tampered_payload_is_rejected() -> None:
    t = tokens()
    header, _, sig = t.issue(SUB, NOW).split(".")
    other = _b64(good_claims(sub="eip155:8453:0x0000000000000000000000000000000000000000"))
    reject(t, f"{header}.{other}.{sig}")


def test_cache_serves_until_exp_then_rejects() -> None:
    t = tokens(ttl_s=100)
    token = t.issue(SUB, NOW)
    assert t.verify(token, T0) == SUB
    assert t.verify(token, T0 + 99) == SUB  # from the cache
    reject(t, token, T0 + 100)
    assert t._cache == {}  # the expired entry is dropped


def test_cache_is_bounded() -> None:
    t = tokens(cache_size=3)
    issued = [t.issue(f"{SUB}{i}", NOW) for i in range(5)]
    for token in issued:
        t.verify(token, T0)
    assert len(t._cache) == 3
    # The evicted ones still verify (uncached); the cache only saves work.
    assert t.verify(issued[0], T0) == f"{SUB}0"


def test_cache_does_not_accept_a_token_it_never_verified() -> None:
    t = tokens()
    good = t.issue(SUB, NOW)
    t.verify(good, T0)
    reject(t, good[:-2] + ("AA" if not good.endswith("AA") else "BB"))


def test_repr_hides_secrets() -> None:
    text = repr(tokens(previous=[OLD]))
    assert "sss" not in text
    assert "ooo" not in text
    assert key_id(SECRET) in text


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({"secret": b"x" * 31}, "JWT secrets must be at least 32 bytes", id="short"),
        pytest.param({"previous": [b"x"]}, "JWT secrets must be at least 32 bytes", id="short-old"),
        pytest.param({"ttl_s": 0}, "jwt_ttl_s must be positive", id="ttl"),
    ],
)
def test_constructor_checks(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tokens(**kw)
    assert info.value.problems == (message,)


# --- the secret file --------------------------------------------------------------------


def test_creates_secret_0600_in_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jwt.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_secret(path) == secret  # stable
    assert [p.name for p in path.parent.iterdir()] == ["jwt.secret"]  # no temp file left


def test_existing_secret_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    path.write_bytes(b"a secret with a newline, 40 bytes long\n")
    assert load_or_create_secret(path) == b"a secret with a newline, 40 bytes long\n"


def test_short_secret_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    path.write_bytes(b"short\n")
    with pytest.raises(ConfigError) as info:
        load_or_create_secret(path)
    assert info.value.problems == (f"{path}: the JWT secret must be at least 32 bytes, not 6",)


def test_missing_previous_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the JWT secret"):
        read_secret(tmp_path / "nope")


def test_uncreatable_secret_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the JWT secret"):
        load_or_create_secret(tmp_path / "file" / "jwt.secret")


def _nest(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=4), children, max_size=3
    )


def _raw64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"[" * 1500 + b"]" * 1500, id="nested-arrays"),
        pytest.param(b'{"kid":' * 600 + b"1" + b"}" * 600, id="nested-objects"),
        pytest.param(b'{"alg":"HS256","kid":' + b"[" * 1000 + b"]" * 1000 + b"}", id="nested-kid"),
    ],
)
def test_a_deeply_nested_header_is_a_401_not_a_crash(header: bytes) -> None:
    # under 4 KB, no credential needed: once a RecursionError that stopped the daemon
    reject(tokens(), f"{_raw64(header)}.{_raw64(b'{}')}.sig")


def test_a_valid_kid_with_a_nested_payload_is_a_401() -> None:
    t = tokens()
    kid = jwt.get_unverified_header(t.issue(SUB, NOW))["kid"]
    head = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    reject(t, f"{head}.{_raw64(b'[' * 1500 + b']' * 1500)}.{_raw64(b'x' * 32)}")


@given(st.text(max_size=300))
def test_any_text_is_verified_or_a_401(token: str) -> None:
    reject(tokens(), token)


@given(st.recursive(st.none() | st.integers() | st.text(max_size=5), _nest, max_leaves=50))
def test_any_json_header_is_a_401(header: object) -> None:
    reject(tokens(), f"{_b64(header)}.{_raw64(b'{}')}.c2ln")
