"""End to end: two aroutd instances (two "hosts", two ports) sharing one real redis-server
(SPEC §14): keys made on one work on the other within a second, usage adds up to a
limit, rate limits and failed-auth throttling count across both, a nonce or a payment
used on one is refused on the other, and Redis going away mid-traffic stops nothing
for known keys and loses no usage once it is back."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from .e2e import Daemon, aroutd, mock_upstream, write_config
from .fakefacilitator import FakeFacilitator, fake_facilitator
from .redisserver import RedisServer, requires_redis
from .support import Keys, sha
from .test_e2e_wallet import sign_in, x402_header
from .test_e2e_x402 import PAY_TO, _pay_header

pytestmark = requires_redis

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
EXTRA = """
[pricing."openai/gpt-4o-mini"]
input = 1000.0
output = 1000.0

[x402]
enabled = true
facilitator_url = "FACILITATOR"
pay_to_evm = "{pay_to}"
networks = ["eip155:84532"]
topup_tiers_usd = [1.0, 5.0]
"""


class Shared(Keys):
    """The usual table and a key with a spending limit and one with an rpm limit."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = "lr_live_" + "b1" * 24
        self.rpm = "lr_live_" + "c2" * 24

    def table(self) -> str:
        return (
            super().table()
            + f"""
[[keys]]
id = "budget"
tenant = "acme"
sha256 = "{sha(self.budget)}"
limit = 0.05

[[keys]]
id = "rpm"
tenant = "acme"
sha256 = "{sha(self.rpm)}"
rpm_limit = 6
"""
        )


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def fac() -> Iterator[FakeFacilitator]:
    with fake_facilitator() as fake:
        yield fake


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, redis_srv: RedisServer, fac: FakeFacilitator
) -> Iterator[tuple[Daemon, Daemon]]:
    tmp: Path = tmp_path_factory.mktemp("hosts")
    keys = Shared()
    with mock_upstream() as (_, up_port):
        # a trusted proxy (the tests themselves): the failed-auth test speaks for an
        # address of its own, which no other test's 401s count against
        cfg = write_config(tmp, up_port, keys, extra_server='trusted_proxies = ["127.0.0.1/32"]')
        text = cfg.read_text().replace(
            '[state]\npath = "state/aroutd.db"\n',
            f'[state]\nbackend = "redis"\nredis_url = "{redis_srv.url}"\n',
        )
        cfg.write_text(text + EXTRA.format(pay_to=PAY_TO).replace("FACILITATOR", fac.url))
        # the two "hosts" share the key table and the JWT secret (an operator's job)
        with aroutd(cfg, keys) as a, aroutd(cfg, keys) as b:
            yield a, b


def _chat(d: Daemon, key: str, client: str = "127.0.0.1") -> httpx.Response:
    return httpx.post(
        f"{d.base}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}", "x-forwarded-for": client},
        timeout=30,
    )


def _mgmt(d: Daemon, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{d.base}{path}",
        json=body,
        headers={"authorization": f"Bearer {d.keys.mgmt}"},
    )


def _within(seconds: float, check: Any) -> float:
    """Poll ``check()`` until true; the time it took (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the bound"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_key_made_on_one_host_works_on_the_other_within_a_second(
    pair: tuple[Daemon, Daemon],
) -> None:
    a, b = pair
    made = _mgmt(a, "POST", "/api/v1/keys", {"name": "shared"})
    assert made.status_code == 201, made.text
    key, digest = made.json()["key"], made.json()["data"]["hash"]
    assert _within(1.0, lambda: _chat(b, key).status_code == 200) < 1.0
    assert _mgmt(a, "DELETE", f"/api/v1/keys/{digest}").status_code == 200
    assert _within(1.0, lambda: _chat(b, key).status_code == 401) < 1.0
    assert _chat(a, key).status_code == 401  # at once on the host that deleted it


def test_usage_from_both_hosts_adds_up_to_the_limit(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    key = a.keys.budget  # type: ignore[attr-defined]
    spent = 0.0
    for i in range(20):
        r = _chat((a, b)[i % 2], key)
        if r.status_code != 200:
            break
        u = r.json()["usage"]
        spent += (u["prompt_tokens"] + u["completion_tokens"]) * 0.001
        time.sleep(0.6)  # > one commit and one poll: each host sees the other's usage
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    assert 0.05 <= spent < 0.05 + 0.02  # one request's overshoot at most, not one per host
    for d in (a, b):
        r = _mgmt(d, "GET", f"/api/v1/keys/{sha(key)}")
        assert r.json()["data"]["usage"] == pytest.approx(spent)


def test_an_rpm_limit_holds_across_both_hosts(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    key = a.keys.rpm  # type: ignore[attr-defined]
    started = time.monotonic()
    statuses = [_chat((a, b)[i % 2], key).status_code for i in range(10)]
    refilled = int((time.monotonic() - started) / 10)  # one request every 10 s
    # 6 in the shared bucket (each host alone would have admitted 6: 10 in all)
    assert 6 <= statuses.count(200) <= 7 + refilled
    assert statuses[-1] == 429


def test_a_nonce_used_on_one_host_is_refused_on_the_other(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    header = x402_header("eip155:8453", Account.create())
    assert sign_in(a, header).status_code == 200
    again = sign_in(b, header)
    assert (again.status_code, again.json()["error"]["message"]) == (401, "nonce already used")


def test_a_payment_used_on_one_host_is_refused_on_the_other(
    pair: tuple[Daemon, Daemon], fac: FakeFacilitator
) -> None:
    a, b = pair
    challenge = httpx.post(f"{a.base}/v1/chat/completions", json=CHAT)
    pay = _pay_header(challenge, Account.create())
    paid = httpx.post(f"{a.base}/v1/chat/completions", json=CHAT, headers=pay, timeout=30)
    assert paid.status_code == 200, paid.text
    replay = httpx.post(f"{b.base}/v1/chat/completions", json=CHAT, headers=pay, timeout=30)
    assert replay.status_code == 402
    error = json.loads(base64.b64decode(replay.headers["payment-required"]))["error"]
    assert error == "invalid_exact_evm_nonce_already_used"
    assert fac.paths().count("/settle") == 1
    # the JWT it bought spends one balance, whichever host serves it: the other host
    # sees the credit at its next usage poll (0.5 s)
    jwt = json.loads(base64.b64decode(paid.headers["payment-response"]))["jwt"]
    assert _within(3.0, lambda: _chat(b, jwt).status_code == 200) < 3.0  # a poll: 0.5 s


def test_redis_away_mid_traffic(pair: tuple[Daemon, Daemon], redis_srv: RedisServer) -> None:
    a, b = pair
    key = a.keys.narrow
    before = _mgmt(a, "GET", f"/api/v1/keys/{sha(key)}").json()["data"]["usage"]
    redis_srv.kill()
    try:
        served = [_chat((a, b)[i % 2], key) for i in range(10)]
        assert [r.status_code for r in served] == [200] * 10  # known keys keep working
        made = _mgmt(a, "POST", "/api/v1/keys", {"name": "x"})
        assert (made.status_code, made.json()["error"]["message"]) == (
            503,
            "state store unavailable",
        )
        health = httpx.get(f"{a.base}/healthz")
        assert health.status_code == 200
    finally:
        redis_srv.start()
    cost = sum((r.json()["usage"]["total_tokens"]) * 0.001 for r in served)
    want = before + cost
    for d in (a, b):
        _within(
            10.0,
            lambda d=d: (
                _mgmt(d, "GET", f"/api/v1/keys/{sha(key)}").json()["data"]["usage"]
                == pytest.approx(want)
            ),
        )


def test_failed_auth_counts_across_both_hosts(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    guesser, wrong = "203.0.113.7", "lr_live_" + "0" * 48
    for i in range(20):  # 10 guesses on each host: neither would hold it back alone
        assert _chat((a, b)[i % 2], wrong, guesser).status_code == 401
    # neither host saw 20 failures itself: the shared counters, exchanged every 0.25 s in
    # the background, hold the address back on both (bounded wait: a loaded machine)
    for d in (a, b):
        _within(5.0, lambda d=d: _chat(d, d.keys.api, guesser).status_code == 429)
        held = _chat(d, d.keys.api, guesser)
        assert held.json()["error"]["message"] == "too many failed authentication attempts"
        assert _chat(d, d.keys.api).status_code == 200  # another address is not held back
