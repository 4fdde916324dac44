"""End to end: x402 payments (SPEC §10) against the real daemon, with the x402 package's own
client (eth-account signer) and Solana transactions built with solders, the fake
facilitator of tests/fakefacilitator.py standing in for x402.org.

An agent with a wallet and no account: its first request gets the 402 challenge; it pays
(the $1 tier: the Python client pays at most $1 unattended), is served in the same round
trip, and leaves with a wallet JWT in ``PAYMENT-RESPONSE`` whose balance is the payment
less what the request cost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from x402 import x402Client, x402ClientSync
from x402.http import x402HTTPClientSync
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from aroutd.shell.files import load_config, wallet_tokens
from aroutd.store.sqlite import SqliteStore

from .e2e import Daemon, aroutd, mock_upstream, write_config
from .fakefacilitator import FakeFacilitator, fake_facilitator, settled_transaction
from .support import Keys
from .test_x402_solana import FACILITATOR, SELLER, Build

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
BASE_SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
SOL_DEV = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
DEAR = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
X402 = f"""
[x402]
enabled = true
facilitator_url = "FACILITATOR"
pay_to_evm = "{PAY_TO}"
pay_to_solana = "{SELLER.pubkey()}"
networks = ["eip155:84532", "{SOL_DEV}"]
topup_usd = 5.0
topup_tiers_usd = [1.0, 5.0, 10.0]

[pricing."openai/gpt-4o-mini"]
input = 1000.0
output = 1000.0

[pricing."openai/gpt-4o"]
input = 100000.0
output = 100000.0
"""


@pytest.fixture(scope="module")
def fac() -> Iterator[FakeFacilitator]:
    with fake_facilitator() as fake:
        fake.fee_payers[SOL_DEV] = str(FACILITATOR.pubkey())
        yield fake


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, fac: FakeFacilitator) -> Iterator[Daemon]:
    tmp: Path = tmp_path_factory.mktemp("x402")
    keys = Keys()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp, up_port, keys)
        cfg.write_text(cfg.read_text() + X402.replace("FACILITATOR", fac.url))
        with aroutd(cfg, keys) as daemon:
            daemon.proc.wait_for('"event":"listening"')
            yield daemon


@pytest.fixture(autouse=True)
def _fresh(fac: FakeFacilitator) -> None:
    fac.behaviour = {"verify": "ok", "settle": "ok"}
    fac.calls.clear()


def _decode(value: str) -> Any:
    return json.loads(base64.b64decode(value, validate=True))


def _post(d: Daemon, body: dict[str, Any] = CHAT, /, **headers: str) -> httpx.Response:
    return httpx.post(f"{d.base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _error(r: httpx.Response) -> tuple[int, str, str]:
    e = r.json()["error"]
    return r.status_code, e["type"], e["message"]


def _pay_header(r: httpx.Response, account: Any) -> dict[str, str]:
    """What the x402 package's client sends back for the 402 ``r``."""
    client = register_exact_evm_client(x402ClientSync(), account)
    http = x402HTTPClientSync(client)
    required = http.get_payment_required_response(lambda n: r.headers.get(n), r.content)
    headers: dict[str, str] = http.encode_payment_signature_header(
        client.create_payment_payload(required)
    )
    return headers


def _balance(d: Daemon, jwt: str) -> float:
    r = httpx.get(f"{d.base}/api/v1/balance", headers={"authorization": f"Bearer {jwt}"})
    assert r.status_code == 200, r.text
    value: float = r.json()["balance"]
    return value


def _cost(r: httpx.Response, per_token: float = 0.001) -> float:
    u = r.json()["usage"]
    return float(u["prompt_tokens"] + u["completion_tokens"]) * per_token


def test_the_challenge(d: Daemon, fac: FakeFacilitator) -> None:
    r = _post(d)
    assert _error(r) == (402, "payment_required", "payment required")
    assert r.headers["cache-control"] == "no-store"
    challenge = _decode(r.headers["payment-required"])
    assert challenge["x402Version"] == 2 and challenge["error"] == "Payment required"
    assert challenge["resource"]["url"] == "http://127.0.0.1:8080/v1/chat/completions"
    evm = [a for a in challenge["accepts"] if a["network"] == "eip155:84532"]
    sol = [a for a in challenge["accepts"] if a["network"] == SOL_DEV]
    assert [a["amount"] for a in evm] == ["5000000", "1000000", "10000000"]  # default first
    assert evm[0] == {
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "5000000",
        "asset": BASE_SEPOLIA_USDC,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2"},
    }
    # the fee payer the facilitator's /supported named
    assert [a["extra"] for a in sol] == [{"feePayer": str(FACILITATOR.pubkey())}] * 3
    siwx = challenge["extensions"]["sign-in-with-x"]
    assert siwx["info"]["domain"] == "127.0.0.1:8080" and len(siwx["info"]["nonce"]) == 32
    assert {c["chainId"]: c["type"] for c in siwx["supportedChains"]}["eip155:8453"] == "eip191"
    assert (
        _decode(_post(d).headers["payment-required"])["extensions"]["sign-in-with-x"]["info"][
            "nonce"
        ]
        != siwx["info"]["nonce"]
    )  # a fresh nonce each time
    # API keys never get a 402; a bad key is still 401
    assert _post(d, authorization=f"Bearer {d.keys.api}").status_code == 200
    assert _post(d, authorization="Bearer lr_live_" + "0" * 48).status_code == 401
    assert _paid_calls(fac) == []


def _paid_calls(fac: FakeFacilitator) -> list[str]:
    return [p for p in fac.paths() if not p.endswith("/supported")]


def test_the_x402_client_pays_and_is_served_in_one_round_trip(
    d: Daemon, fac: FakeFacilitator
) -> None:
    account = Account.create()

    async def agent() -> httpx.Response:
        client = register_exact_evm_client(x402Client(), account)
        async with x402HttpxClient(client, timeout=30) as http:
            return await http.post(f"{d.base}/v1/chat/completions", json=CHAT)

    r = asyncio.run(agent())  # the package's automatic client: 402, pay, retry
    assert r.status_code == 200, r.text
    paid = _decode(r.headers["payment-response"])
    assert paid["success"] is True and paid["network"] == "eip155:84532"
    assert paid["payer"] == account.address
    assert fac.paths()[-2:] == ["/verify", "/settle"]
    _, settle_body, _ = fac.calls[-1]
    assert settle_body["paymentRequirements"]["amount"] == "1000000"  # the $1 tier
    assert paid["transaction"] == settled_transaction(settle_body["paymentPayload"])
    jwt = paid["jwt"]
    assert _balance(d, jwt) == pytest.approx(1.0 - _cost(r))
    time.sleep(0.3)  # the debit line is committed within 100 ms
    lines = httpx.get(
        f"{d.base}/api/v1/transactions", headers={"authorization": f"Bearer {jwt}"}
    ).json()["transactions"]
    assert [(t["type"], t["request_id"]) for t in lines] == [
        ("usage", r.headers["x-request-id"]),
        ("credit", r.headers["x-request-id"]),
    ]
    assert lines[1]["amount"] == 1.0 and lines[1]["transaction"] == paid["transaction"]
    assert lines[1]["network"] == "eip155:84532"
    # the JWT works on its own afterwards, no payment needed
    assert _post(d, authorization=f"Bearer {jwt}").status_code == 200


def test_a_payment_is_used_once(d: Daemon, fac: FakeFacilitator) -> None:
    account = Account.create()
    pay = _pay_header(_post(d), account)
    assert _post(d, **pay).status_code == 200
    again = _post(d, **pay)
    assert _error(again) == (402, "payment_required", "payment required")
    assert _decode(again.headers["payment-required"])["error"] == (
        "invalid_exact_evm_nonce_already_used"
    )
    assert fac.paths().count("/settle") == 1  # refused before the facilitator was asked


def test_local_verification_comes_first(d: Daemon, fac: FakeFacilitator) -> None:
    account = Account.create()
    pay = _pay_header(_post(d), account)
    payload = _decode(pay["PAYMENT-SIGNATURE"])
    payload["payload"]["authorization"]["value"] = "1"  # not what was signed, nor asked
    forged = base64.b64encode(json.dumps(payload).encode()).decode()
    r = _post(d, **{"PAYMENT-SIGNATURE": forged})
    assert _decode(r.headers["payment-required"])["error"] == (
        "invalid_exact_evm_payload_authorization_value_mismatch"
    )
    payload["payload"]["authorization"]["value"] = "1000000"
    payload["accepted"]["payTo"] = "0x" + "11" * 20  # not one of ours
    forged = base64.b64encode(json.dumps(payload).encode()).decode()
    r = _post(d, **{"PAYMENT-SIGNATURE": forged})
    assert _decode(r.headers["payment-required"])["error"] == "No matching payment requirements"
    for bad in ("%%%", base64.b64encode(b"[1, 2]").decode(), "e30="):
        r = _post(d, **{"PAYMENT-SIGNATURE": bad})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert _paid_calls(fac) == []


@pytest.mark.parametrize(
    ("behaviour", "status", "check"),
    [
        pytest.param({"verify": "invalid:insufficient_funds"}, 402, "required", id="verify-no"),
        pytest.param({"settle": "fail:transaction_failed"}, 402, "response", id="settle-no"),
        pytest.param({"verify": "500"}, 502, "released", id="verify-down"),
        pytest.param({"settle": "drop"}, 502, "unknown", id="settle-lost"),
    ],
)
def test_facilitator_failures_credit_nothing(
    d: Daemon, fac: FakeFacilitator, behaviour: dict[str, str], status: int, check: str
) -> None:
    account = Account.create()
    fac.behaviour = {"verify": "ok", "settle": "ok", **behaviour}
    pay = _pay_header(_post(d), account)
    r = _post(d, **pay)
    assert r.status_code == status, r.text
    assert "payment-response" not in r.headers or check == "response"
    if check == "required":
        assert _decode(r.headers["payment-required"])["error"] == "insufficient_funds"
    elif check == "response":
        failed = _decode(r.headers["payment-response"])
        assert (failed["success"], failed["errorReason"]) == (False, "transaction_failed")
    else:
        assert _error(r) == (502, "server_error", "payment facilitator unavailable")
    fac.behaviour = {"verify": "ok", "settle": "ok"}
    retry = _post(d, **pay)  # the same payment once more
    if check == "released":  # it never reached the chain: it may be tried again
        assert retry.status_code == 200
    else:
        assert retry.status_code == 402


def test_a_used_up_wallet_tops_up_with_its_own_jwt(d: Daemon, fac: FakeFacilitator) -> None:
    account = Account.create()
    first = _post(d, DEAR)
    served = _post(d, DEAR, **_pay_header(first, account))
    assert served.status_code == 200
    jwt = _decode(served.headers["payment-response"])["jwt"]
    bearer = {"authorization": f"Bearer {jwt}"}
    left = 1.0 - _cost(served, 0.1)
    while left > 0:  # spend it
        r = _post(d, DEAR, **bearer)
        assert r.status_code == 200
        left -= _cost(r, 0.1)
    out = _post(d, DEAR, **bearer)
    assert _error(out) == (402, "payment_required", "insufficient credits")
    assert "payment-required" in out.headers  # the challenge to top up
    topped = _post(d, DEAR, **bearer, **_pay_header(out, account))
    assert topped.status_code == 200, topped.text
    assert _decode(topped.headers["payment-response"])["success"] is True
    assert _balance(d, jwt) == pytest.approx(left + 1.0 - _cost(topped, 0.1))


def test_solana_payment(d: Daemon, fac: FakeFacilitator) -> None:
    challenge = _decode(_post(d).headers["payment-required"])
    requirement = next(
        a for a in challenge["accepts"] if a["network"] == SOL_DEV and a["amount"] == "1000000"
    )
    tx = Build().bytes()
    payload = {
        "x402Version": 2,
        "accepted": requirement,
        "payload": {"transaction": base64.b64encode(tx).decode()},
    }
    header = base64.b64encode(json.dumps(payload).encode()).decode()
    r = _post(d, **{"PAYMENT-SIGNATURE": header})
    assert r.status_code == 200, r.text
    paid = _decode(r.headers["payment-response"])
    assert paid["payer"] == str(Build().authority.pubkey())
    assert _post(d, **{"PAYMENT-SIGNATURE": header}).status_code == 402  # once


def test_a_settled_payment_is_credited_after_a_crash(
    tmp_path: Path, fac: FakeFacilitator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOCK_UPSTREAM_KEY", "x")  # to load the config here, for its JWT secret
    keys = Keys()
    account = f"eip155:84532:{Account.create().address}"
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        cfg.write_text(cfg.read_text() + X402.replace("FACILITATOR", fac.url))
        with aroutd(cfg, keys) as first:  # creates the state file
            assert first.proc.stop() == 0
        # what a crash between settlement and credit leaves behind
        db = sqlite3.connect(tmp_path / "state" / "aroutd.db")
        now = time.time()
        db.execute(
            "INSERT INTO payments (id, state, account, network, usd, tx_hash, request_id,"
            " created_at, updated_at) VALUES (?, 'settled', ?, 'eip155:84532', 5.0, '0xabc',"
            " 'rid', ?, ?)",
            ("eip155:84532/0xdead/0x01", account, now, now),
        )
        db.commit()
        db.close()
        jwt = _jwt(cfg, account)
        recovered = []
        for _ in range(2):  # credited once, however often it starts
            with aroutd(cfg, keys) as again:
                assert _balance(again, jwt) == 5.0
                assert again.proc.stop() == 0
                recovered.append(len(again.proc.events("payment_recovered")))
        assert recovered == [1, 0]
    store = SqliteStore.open(tmp_path / "state" / "aroutd.db")
    try:
        (line,) = store.transactions(account, 0, 10)
        assert (line.type, line.amount, line.transaction) == ("credit", 5.0, "0xabc")
    finally:
        store.close()


def _jwt(cfg: Path, account: str) -> str:
    """A wallet JWT for ``account`` as the daemon of ``cfg`` issues them."""
    tokens = wallet_tokens(load_config(cfg))
    assert tokens is not None
    return tokens.issue(account, datetime.now(UTC))


def _access_line(d: Daemon, request_id: str) -> dict[str, Any]:
    """The access log line of one request (waits, bounded, for it to be written)."""
    line = d.proc.wait_for(f'"request_id":"{request_id}"', timeout=5)
    data: dict[str, Any] = json.loads(line)
    return data


def _balance_of(d: Daemon, account: str, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("MOCK_UPSTREAM_KEY", "x")
    return _balance(d, _jwt(d.config, account))


def _tampered(pay: dict[str, str], change: Any) -> dict[str, str]:
    payload = _decode(pay["PAYMENT-SIGNATURE"])
    change(payload)
    return {"PAYMENT-SIGNATURE": base64.b64encode(json.dumps(payload).encode()).decode()}


def _set(path: str, value: Any) -> Any:
    def change(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = payload
        for p in parents:
            node = node[p]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            _set("payload.authorization.value", "999999"),
            "invalid_exact_evm_payload_authorization_value_mismatch",
            id="underpayment",
        ),
        pytest.param(
            _set("payload.authorization.to", "0x" + "22" * 20),
            "invalid_exact_evm_payload_recipient_mismatch",
            id="wrong-payee",
        ),
        pytest.param(
            _set("accepted.asset", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
            "No matching payment requirements",
            id="wrong-asset",
        ),
        pytest.param(
            _set("payload.authorization.validBefore", "1000"),
            "invalid_exact_evm_payload_authorization_valid_before",
            id="expired",
        ),
    ],
)
def test_refused_payments_credit_nothing_and_send_nothing_upstream(
    d: Daemon,
    fac: FakeFacilitator,
    monkeypatch: pytest.MonkeyPatch,
    change: Any,
    reason: str,
) -> None:
    account = Account.create()
    pay = _tampered(_pay_header(_post(d), account), change)
    r = _post(d, **pay)
    assert _error(r) == (402, "payment_required", "payment required")
    assert _decode(r.headers["payment-required"])["error"] == reason
    assert _paid_calls(fac) == []  # refused before the facilitator
    assert _access_line(d, r.headers["x-request-id"])["ttfb_ms"] is None  # not upstream
    assert _balance_of(d, f"eip155:84532:{account.address}", monkeypatch) == 0.0


def test_a_concurrent_replay_settles_once(
    d: Daemon, fac: FakeFacilitator, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = Account.create()
    pay = _pay_header(_post(d), account)
    results: list[httpx.Response] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        results.append(_post(d, **pay))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200, 402, 402, 402]
    assert fac.paths().count("/settle") == 1
    refused = [r for r in results if r.status_code == 402]
    for r in refused:
        assert _access_line(d, r.headers["x-request-id"])["ttfb_ms"] is None
    balance = _balance_of(d, f"eip155:84532:{account.address}", monkeypatch)
    served = next(r for r in results if r.status_code == 200)
    assert balance == pytest.approx(1.0 - _cost(served))  # credited once


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        _JSON,
        st.fixed_dictionaries(
            {"x402Version": st.sampled_from([1, 2, "2", None]), "accepted": _JSON, "payload": _JSON}
        ),
    ),
    raw=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_any_payment_header_is_400_or_402_never_a_fault(
    d: Daemon, fac: FakeFacilitator, payload: Any, raw: bytes | None
) -> None:
    """Hostile PAYMENT-SIGNATURE values against the real daemon: a clear 400 or 402, the
    daemon still up, the facilitator never asked."""
    text = json.dumps(payload).encode() if raw is None else raw
    header = base64.b64encode(text).decode()
    r = _post(d, **{"PAYMENT-SIGNATURE": header})
    assert r.status_code in (400, 402), r.text
    assert r.json()["error"]["type"] in ("invalid_request_error", "payment_required")
    assert _paid_calls(fac) == []
