"""aroutd.auth.signin: verify_signin against committed vectors and real SDK output; sign_in."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair

from aroutd.auth.signin import SigninSettings, resolve_chain, sign_in, verify_signin
from aroutd.auth.siwx import decode_header
from aroutd.auth.walletjwt import WalletTokens
from aroutd.config.parse import (
    Config,
    KeysConfig,
    ServerConfig,
    StateConfig,
    WalletConfig,
    X402Config,
)
from aroutd.errors import BadRequest, HTTPError, Unauthorized
from aroutd.shell.files import wallet_tokens
from aroutd.store.base import WalletAccount
from aroutd.store.sqlite import SqliteStore

VECTORS = json.loads((Path(__file__).parent / "vectors" / "siwx_signin.json").read_text())
EVM = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
SOL = Keypair.from_seed(bytes(range(1, 33)))
SOL_MAIN = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
NETWORKS = ("eip155:8453", "eip155:84532", f"solana:{SOL_MAIN}")
NOW = datetime(2026, 3, 20, 12, 0, 30, tzinfo=UTC)
ISSUED = "2026-03-20T12:00:00Z"
PUBLIC_URL = "https://api.example.com"
SETTINGS = SigninSettings(public_url=PUBLIC_URL, networks=NETWORKS, max_age_s=300)


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def text_for(
    address: str,
    *,
    label: str = "Ethereum",
    chain_id: str = "8453",
    nonce: str | None = None,
    domain: str = "api.example.com",
    uri: str = "https://api.example.com/v1/x402/auth",
    issued_at: str = ISSUED,
    extra: str = "",
) -> str:
    """The ARouter SDK message (arouter-api.md §3.3)."""
    return (
        f"{domain} wants you to sign in with your {label} account:\n{address}\n\n"
        f"Sign in to ARouter with your wallet\n\nURI: {uri}\nVersion: 1\n"
        f"Chain ID: {chain_id}\nNonce: {nonce or secrets.token_hex(16)}\n"
        f"Issued At: {issued_at}{extra}"
    )


def evm_header(text: str, account: Any = EVM) -> bytes:
    sig = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
    return base64.b64encode(json.dumps({"message": text, "signature": sig}).encode())


def sol_header(text: str, keypair: Keypair = SOL) -> bytes:
    sig = base64.b64encode(bytes(keypair.sign_message(text.encode()))).decode()
    return base64.b64encode(json.dumps({"message": text, "signature": sig}).encode())


def verify(header: bytes, now: datetime = NOW, **kw: Any) -> Any:
    args: dict[str, Any] = {"public_url": PUBLIC_URL, "networks": NETWORKS, "max_age_s": 300} | kw
    return verify_signin(decode_header(header), now=now, **args)


def error_of(header: bytes, now: datetime = NOW, **kw: Any) -> tuple[int, str]:
    with pytest.raises(HTTPError) as info:
        verify(header, now, **kw)
    return info.value.status, info.value.message


# --- committed vectors (tests/vectors/siwx_signin.json, made by make_vectors.py) --------


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["id"]) for v in VECTORS["vectors"]])
def test_vectors(vector: dict[str, Any]) -> None:
    kw = {
        "public_url": vector["public_url"],
        "networks": tuple(vector["networks"]),
        "max_age_s": vector["max_age_s"],
    }
    now, expect = stamp(vector["now"]), vector["expect"]
    header = vector["header"].encode()
    if "status" in expect:
        assert error_of(header, now, **kw) == (expect["status"], expect["message"])
        return
    result = verify(header, now, **kw)
    assert result.account == expect["account"]
    assert result.nonce == expect["nonce"]
    assert result.nonce_expires_at == stamp(expect["nonce_expires_at"])
    assert result.account == f"{result.chain}:{result.address}"


# --- live: the real x402 package, eth-account and solders --------------------------------


def _x402_header(info: dict[str, Any], signer: Any) -> bytes:
    siwx = pytest.importorskip("x402.extensions.sign_in_with_x")
    url = "https://api.example.com/v1/x402/auth"
    payload = asyncio.run(siwx.create_siwx_payload(info, signer, url))
    return str(siwx.encode_siwx_header(payload)).encode()


class _SoldersSigner:
    """x402's Solana signer shape (x402-siwx.md §7) around a solders Keypair."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self.address = str(keypair.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        return bytes(self.keypair.sign_message(message))


_INFOS = [
    pytest.param({}, id="minimal"),
    pytest.param(
        {
            "statement": "Sign in",
            "expirationTime": "2026-03-20T12:04:00.000Z",
            "notBefore": "2026-03-20T11:59:00.000Z",
            "requestId": "r-1",
            "resources": ["https://api.example.com/v1/chat/completions"],
        },
        id="every-field",
    ),
]


def _info(extra: dict[str, Any], chain: str, type_: str) -> dict[str, Any]:
    base = {
        "domain": "api.example.com",
        "uri": "https://api.example.com/v1/x402/auth",
        "version": "1",
        "nonce": secrets.token_hex(16),
        "issuedAt": "2026-03-20T12:00:00.000Z",
        "chainId": chain,
        "type": type_,
    }
    return base | extra


@pytest.mark.parametrize("extra", _INFOS)
def test_x402_solana_header(extra: dict[str, Any]) -> None:
    info = _info(extra, f"solana:{SOL_MAIN}", "ed25519")
    result = verify(_x402_header(info, _SoldersSigner(SOL)))
    assert result.account == f"solana:{SOL_MAIN}:{SOL.pubkey()}"
    assert result.nonce == info["nonce"]


@pytest.mark.parametrize("extra", _INFOS)
def test_x402_evm_header(extra: dict[str, Any]) -> None:
    pytest.importorskip("siwe", reason="x402 formats EVM messages with signinwithethereum")
    info = _info(extra, "eip155:84532", "eip191")
    result = verify(_x402_header(info, EVM))
    assert result.account == f"eip155:84532:{EVM.address}"


def test_arouter_sdk_headers_both_chains() -> None:
    assert verify(evm_header(text_for(EVM.address))).account == f"eip155:8453:{EVM.address}"
    text = text_for(str(SOL.pubkey()), label="Solana", chain_id=SOL_MAIN)
    assert verify(sol_header(text)).account == f"solana:{SOL_MAIN}:{SOL.pubkey()}"


# --- rules and their order --------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain_id", "expected"),
    [
        pytest.param("8453", "eip155:8453", id="numeric"),
        pytest.param(SOL_MAIN, f"solana:{SOL_MAIN}", id="base58"),
        pytest.param("eip155:1", "eip155:1", id="caip2"),
        pytest.param("cosmos:cosmoshub-4", "cosmos:cosmoshub-4", id="other-namespace"),
    ],
)
def test_resolve_chain(chain_id: str, expected: str) -> None:
    assert resolve_chain(chain_id) == expected


@pytest.mark.parametrize("chain_id", ["EIP155:1", "x" * 40, "eip155:" + "1" * 33, "ab:1"])
def test_resolve_chain_rejects(chain_id: str) -> None:
    with pytest.raises(BadRequest, match="invalid SIWx message: malformed Chain ID"):
        resolve_chain(chain_id)


@pytest.mark.parametrize(
    ("header", "now", "kw", "expected"),
    [
        pytest.param(
            evm_header(text_for(EVM.address, chain_id="1", domain="evil.com")),
            NOW,
            {},
            (401, "unsupported chain"),
            id="chain-before-domain",
        ),
        pytest.param(
            evm_header(text_for("0x" + "ab" * 19, domain="evil.com")),
            NOW,
            {},
            (400, "malformed address"),
            id="address-before-domain",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, domain="evil.com")),
            NOW + timedelta(hours=1),
            {},
            (401, "domain mismatch"),
            id="domain-before-time",
        ),
        pytest.param(
            evm_header(text_for(EVM.address), Account.create()),
            NOW + timedelta(hours=1),
            {},
            (401, "message expired"),
            id="time-before-signature",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, label="Solana")),
            NOW,
            {},
            (400, "invalid SIWx message: the account type does not match the Chain ID"),
            id="label-mismatch",
        ),
        pytest.param(
            sol_header(text_for(str(SOL.pubkey()), label="Solana", chain_id=SOL_MAIN)),
            NOW,
            {"networks": ("eip155:8453",)},
            (401, "unsupported chain"),
            id="solana-not-configured",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, chain_id="cosmos:cosmoshub-4")),
            NOW,
            {"networks": ("cosmos:cosmoshub-4",)},
            (401, "unsupported chain"),
            id="configured-but-unknown-namespace",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, uri="http://api.example.com/v1/x402/auth")),
            NOW,
            {},
            (401, "domain mismatch"),
            id="uri-scheme",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, uri="https://api.example.com:8443/")),
            NOW,
            {},
            (401, "domain mismatch"),
            id="uri-port",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, uri="https://u@api.example.com/")),
            NOW,
            {},
            (401, "domain mismatch"),
            id="uri-userinfo",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, domain="api.example.com:99999")),
            NOW,
            {},
            (401, "domain mismatch"),
            id="domain-bad-port",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, domain="api.example.com.")),
            NOW,
            {},
            (401, "domain mismatch"),
            id="domain-trailing-dot",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, domain="127.0.0.1:8080")),
            NOW,
            {"public_url": "http://127.0.0.1:8080"},
            (401, "domain mismatch"),
            id="uri-origin-not-public-url",
        ),
        pytest.param(
            evm_header(text_for(EVM.address, issued_at="2026-03-20T12:01:31Z")),
            NOW,
            {},
            (401, "message not yet valid"),
            id="issued-61s-ahead",
        ),
    ],
)
def test_errors_and_check_order(
    header: bytes, now: datetime, kw: dict[str, Any], expected: tuple[int, str]
) -> None:
    assert error_of(header, now, **kw) == expected


@pytest.mark.parametrize(
    ("issued_at", "now_offset_s", "ok"),
    [
        pytest.param("2026-03-20T12:00:00Z", 300, True, id="exactly-max-age"),
        pytest.param("2026-03-20T12:00:00Z", 300.001, False, id="just-past-max-age"),
        pytest.param("2026-03-20T12:01:00Z", 0, True, id="60s-ahead"),
        pytest.param("2026-03-20T12:01:00.001Z", 0, False, id="just-over-60s-ahead"),
    ],
)
def test_time_boundaries(issued_at: str, now_offset_s: float, ok: bool) -> None:
    header = evm_header(text_for(EVM.address, issued_at=issued_at))
    now = datetime(2026, 3, 20, 12, tzinfo=UTC) + timedelta(seconds=now_offset_s)
    if ok:
        assert verify(header, now).account == f"eip155:8453:{EVM.address}"
    else:
        assert error_of(header, now)[0] == 401


@pytest.mark.parametrize(
    ("public_url", "domain", "uri"),
    [
        pytest.param(
            "https://api.example.com:443", "api.example.com", "https://api.example.com/", id="443"
        ),
        pytest.param(
            "https://api.example.com",
            "api.example.com:443",
            "https://api.example.com:443/x",
            id="443b",
        ),
        pytest.param(
            "https://API.example.com/", "api.EXAMPLE.com", "HTTPS://api.example.com", id="case"
        ),
        pytest.param(
            "http://[::1]:8080", "[::1]:8080", "http://[::1]:8080/v1/x402/auth", id="ipv6"
        ),
    ],
)
def test_domain_binding_equivalent_spellings(public_url: str, domain: str, uri: str) -> None:
    header = evm_header(text_for(EVM.address, domain=domain, uri=uri))
    assert verify(header, public_url=public_url).address == EVM.address


def test_scheme_prefix_must_match_public_url() -> None:
    text = "https://" + text_for(EVM.address)
    assert verify(evm_header(text)).address == EVM.address
    assert error_of(evm_header("http://" + text_for(EVM.address))) == (401, "domain mismatch")


def test_x402_type_must_match_chain() -> None:
    (vector,) = [v for v in VECTORS["vectors"] if v["id"] == "x402-reference-evm"]
    obj = json.loads(base64.b64decode(vector["header"]))
    bad_type = base64.b64encode(json.dumps(obj | {"type": "ed25519"}).encode())
    now = datetime(2024, 1, 15, 10, 31, tzinfo=UTC)
    assert error_of(bad_type, now, public_url="https://api.example.com") == (
        400,
        "invalid SIGN-IN-WITH-X header: type does not match chainId",
    )
    other_ns = base64.b64encode(json.dumps(obj | {"chainId": "foo:8453"}).encode())
    assert error_of(other_ns, now) == (401, "unsupported chain")


# --- sign_in: the endpoint's work -------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore.open(tmp_path / "state" / "aroutd.db")
    yield s
    s.close()


TOKENS = WalletTokens(secret=b"k" * 32, issuer=PUBLIC_URL, ttl_s=3600)


def test_sign_in_answers_jwt_tenant_and_key_id(store: SqliteStore) -> None:
    body = sign_in(
        evm_header(text_for(EVM.address)), settings=SETTINGS, store=store, tokens=TOKENS, now=NOW
    )
    account = f"eip155:8453:{EVM.address}"
    wallet = store.ensure_wallet(account, NOW)
    assert body == {"jwt": body["jwt"], "tenant_id": f"wallet:{account}", "key_id": wallet.id}
    assert TOKENS.verify(body["jwt"], NOW.timestamp()) == account
    again = sign_in(
        evm_header(text_for(EVM.address)), settings=SETTINGS, store=store, tokens=TOKENS, now=NOW
    )
    assert again["key_id"] == wallet.id  # the account is created once
    assert again["jwt"] != body["jwt"]


def test_sign_in_nonce_is_single_use(store: SqliteStore) -> None:
    header = sol_header(text_for(str(SOL.pubkey()), label="Solana", chain_id=SOL_MAIN))
    sign_in(header, settings=SETTINGS, store=store, tokens=TOKENS, now=NOW)
    with pytest.raises(Unauthorized) as info:
        sign_in(
            header, settings=SETTINGS, store=store, tokens=TOKENS, now=NOW + timedelta(seconds=1)
        )
    assert (info.value.status, info.value.message) == (401, "nonce already used")


def test_failed_signature_does_not_burn_the_nonce(store: SqliteStore) -> None:
    text = text_for(EVM.address, nonce="sharednonce1234")
    with pytest.raises(Unauthorized, match="invalid signature"):
        sign_in(
            evm_header(text, Account.create()),
            settings=SETTINGS,
            store=store,
            tokens=TOKENS,
            now=NOW,
        )
    body = sign_in(evm_header(text), settings=SETTINGS, store=store, tokens=TOKENS, now=NOW)
    assert body["tenant_id"] == f"wallet:eip155:8453:{EVM.address}"


def test_nonce_is_remembered_until_the_message_expires(store: SqliteStore) -> None:
    text = text_for(
        EVM.address, nonce="rememberme123", extra="\nExpiration Time: 2026-03-20T12:01:00Z"
    )
    sign_in(evm_header(text), settings=SETTINGS, store=store, tokens=TOKENS, now=NOW)
    with pytest.raises(Unauthorized, match="nonce already used"):
        sign_in(
            evm_header(text),
            settings=SETTINGS,
            store=store,
            tokens=TOKENS,
            now=NOW + timedelta(seconds=29),
        )
    with pytest.raises(Unauthorized, match="message expired"):
        sign_in(
            evm_header(text),
            settings=SETTINGS,
            store=store,
            tokens=TOKENS,
            now=NOW + timedelta(seconds=30),
        )


class FakeStore:
    """A StateStore in memory, for the fuzz test below."""

    def __init__(self) -> None:
        self.nonces: set[str] = set()

    def use_nonce(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        fresh = nonce not in self.nonces
        self.nonces.add(nonce)
        return fresh

    def ensure_wallet(self, account: str, now: datetime) -> WalletAccount:
        return WalletAccount(id="wa_fake", account=account, created_at=now)

    def close(self) -> None:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=300).map(lambda t: base64.b64encode(t.encode())))
def test_sign_in_on_arbitrary_input_is_400_or_401(value: bytes) -> None:
    try:
        sign_in(value, settings=SETTINGS, store=FakeStore(), tokens=TOKENS, now=NOW)
    except HTTPError as exc:
        status = exc.status
    assert status in (400, 401)


def test_settings_from_config(tmp_path: Path) -> None:
    wallet = WalletConfig(
        jwt_secret_file=tmp_path / "jwt.secret", siwx_max_age_s=120, networks=("eip155:1",)
    )
    cfg = Config(
        path=tmp_path / "aroutd.toml",
        server=ServerConfig(public_url="https://gw.example:8443"),
        keys=KeysConfig(file=tmp_path / "keys.toml"),
        state=StateConfig(path=tmp_path / "state.db"),
        wallet=wallet,
        x402=X402Config(),
        upstreams={},
        routes=(),
        pricing={},
    )
    assert SigninSettings.from_config(cfg) == SigninSettings(
        public_url="https://gw.example:8443", networks=("eip155:1",), max_age_s=120
    )
    tokens = wallet_tokens(cfg)
    assert tokens is not None
    assert (tmp_path / "jwt.secret").stat().st_size == 32
    token = tokens.issue("eip155:1:0x0", NOW)
    assert tokens.verify(token, NOW.timestamp()) == "eip155:1:0x0"
