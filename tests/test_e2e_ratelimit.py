"""End to end: rate limits (SPEC §9) on the real daemon: the 429 and its headers with raw
requests, the openai SDK waiting out Retry-After on its own, a tenant's and a wallet's
limits, tokens per minute, and limiter state across a SIGHUP."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from aroutd.shell.files import load_config, wallet_tokens

from .e2e import Daemon, aroutd, cli, mock_upstream, write_config
from .support import Keys, new_key, sha

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
WALLET = "eip155:8453:0x" + "1234567890" * 4


class Limited(Keys):
    """The usual table, and keys with rate limits: ``rpm`` 60/min (one a second),
    ``team_a``/``team_b`` in a tenant of rpm 3, ``tokens`` 10 tokens a minute, ``daily``
    5 a day and gpt-4o-mini only."""

    def __init__(self) -> None:
        super().__init__()
        self.rpm, self.team_a, self.team_b, self.tokens, self.daily = (new_key() for _ in range(5))

    def table(self, rpm: int = 60) -> str:
        return (
            super().table()
            + f"""
[tenants.team]
rpm_limit = 3

[[keys]]
id = "rpm"
tenant = "acme"
sha256 = "{sha(self.rpm)}"
rpm_limit = {rpm}

[[keys]]
id = "team-a"
tenant = "team"
sha256 = "{sha(self.team_a)}"

[[keys]]
id = "team-b"
tenant = "team"
sha256 = "{sha(self.team_b)}"
rpd_limit = 1000

[[keys]]
id = "tokens"
tenant = "acme"
sha256 = "{sha(self.tokens)}"
tpm_limit = 10

[[keys]]
id = "daily"
tenant = "acme"
sha256 = "{sha(self.daily)}"
rpd_limit = 5
allowed_models = ["openai/gpt-4o-mini"]
"""
        )


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp: Path = tmp_path_factory.mktemp("ratelimit")
    keys = Limited()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp, up_port, keys)
        text = cfg.read_text().replace(
            '[wallet]\njwt_secret_file = "state/jwt.secret"\n',
            '[wallet]\njwt_secret_file = "state/jwt.secret"\nrpm_limit = 2\n',
        )
        cfg.write_text(text)
        with aroutd(cfg, keys) as daemon:
            yield daemon


def _post(d: Daemon, key: str) -> httpx.Response:
    return httpx.post(
        f"{d.base}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"}
    )


def _until_refused(d: Daemon, key: str, most: int) -> list[httpx.Response]:
    """Requests with ``key`` until one is refused (at most ``most``)."""
    out = []
    for _ in range(most):
        r = _post(d, key)
        out.append(r)
        if r.status_code != 200:
            break
    return out


def test_429_and_the_headers(d: Daemon) -> None:
    keys: Limited = d.keys  # type: ignore[assignment]
    started = time.monotonic()
    answers = _until_refused(d, keys.rpm, 200)
    took = time.monotonic() - started
    served, refused = answers[:-1], answers[-1]
    # 60 in the bucket, plus the ones it refilled while they were sent (one a second)
    assert 60 <= len(served) <= 61 + int(took)
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in served]
    assert remaining[:3] == [59, 58, 57] and remaining[-1] <= 1
    assert {r.headers["x-ratelimit-limit"] for r in served} == {"60"}
    now = time.time()
    assert now < int(served[-1].headers["x-ratelimit-reset"]) <= now + 61
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {"message": "rate limit exceeded", "type": "rate_limit_error"}
    }
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # an unlimited key has no such headers
    assert "x-ratelimit-limit" not in _post(d, keys.api).headers
    line = d.proc.wait_for('"rate_limit":"rpm"')
    assert '"status":429' in line and '"key_id":"rpm"' in line


def test_every_answer_to_a_limited_key_shows_its_window_and_only_inference_counts(
    d: Daemon,
) -> None:
    """SPEC §9: answers given before the limiter (a 403 for the model) and by endpoints
    that are not limited (/v1/key) carry X-RateLimit-* as the window stands, counting
    nothing; a forwarded request counts, whatever the upstream answers."""
    keys: Limited = d.keys  # type: ignore[assignment]
    auth = {"authorization": f"Bearer {keys.daily}"}

    def window(r: httpx.Response) -> tuple[str, str]:
        return r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]

    me = httpx.get(f"{d.base}/v1/key", headers=auth)
    assert me.status_code == 200 and window(me) == ("5", "5")
    other_model = {**CHAT, "model": "gpt-4o"}
    refused = httpx.post(f"{d.base}/v1/chat/completions", json=other_model, headers=auth)
    assert refused.status_code == 403 and window(refused) == ("5", "5")
    served = _post(d, keys.daily)
    assert served.status_code == 200 and window(served) == ("5", "4")
    assert window(httpx.get(f"{d.base}/v1/key", headers=auth)) == ("5", "4")
    midnight = (int(time.time()) // 86_400 + 1) * 86_400
    assert int(served.headers["x-ratelimit-reset"]) == midnight
    # forwarded, so counted, and the upstream's own 404 carries the window too
    lost = httpx.post(f"{d.base}/v1/no-such-endpoint", json=CHAT, headers=auth)
    assert lost.status_code == 404 and window(lost) == ("5", "3")
    # an unlimited key's answers have none
    assert (
        "x-ratelimit-limit"
        not in httpx.get(
            f"{d.base}/v1/key", headers={"authorization": f"Bearer {keys.api}"}
        ).headers
    )


def test_the_openai_sdk_waits_out_retry_after(d: Daemon) -> None:
    keys: Limited = d.keys  # type: ignore[assignment]
    client = openai.OpenAI(base_url=f"{d.base}/v1", api_key=keys.rpm, max_retries=2)
    for _ in range(5):  # the bucket refills one a second: it may refill before the SDK asks
        while _post(d, keys.rpm).status_code == 200:  # empty the bucket
            pass
        refused_before = _refusals(d)
        started = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        waited = time.monotonic() - started
        assert raw.http_response.status_code == 200
        assert raw.parse().usage is not None
        if _refusals(d) > refused_before:  # the SDK was refused, and then served
            assert 0.9 <= waited < 10  # it waited Retry-After (1 s) on its own
            return
    raise AssertionError("the SDK was never refused: the bucket always refilled first")


def _refusals(d: Daemon) -> int:
    """429s of the rpm key in the access log so far."""
    time.sleep(0.05)  # the line of the last answer is written as the request ends
    return sum('"key_id":"rpm"' in line and '"status":429' in line for line in d.proc.lines)


def test_a_tenant_limit_spans_its_keys(d: Daemon) -> None:
    keys: Limited = d.keys  # type: ignore[assignment]
    statuses = [_post(d, k).status_code for k in (keys.team_a, keys.team_b, keys.team_a)]
    assert statuses == [200, 200, 200]
    refused = _post(d, keys.team_b)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-limit"] == "3"  # the tenant's: nearest to refusing


def test_tokens_per_minute(d: Daemon) -> None:
    keys: Limited = d.keys  # type: ignore[assignment]
    first = _post(d, keys.tokens)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert 0 < used < 10
    assert _post(d, keys.tokens).status_code == 200  # the window holds < 10 tokens
    refused = _post(d, keys.tokens)  # now it holds >= 10
    assert refused.status_code == 429
    assert 50 <= int(refused.headers["retry-after"]) <= 61  # 60 s from the first report
    assert "x-ratelimit-limit" not in refused.headers  # tpm has no such headers


def test_a_wallet_limit(d: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_UPSTREAM_KEY", "x")
    tokens = wallet_tokens(load_config(d.config))
    assert tokens is not None
    jwt = tokens.issue(WALLET, datetime.now(UTC))
    # no balance: the 402 of SPEC §9 comes first (rate limits are checked after it)
    assert _post(d, jwt).status_code == 402
    assert cli(d.config, "wallets", "credit", WALLET, "10").returncode == 0
    deadline = time.monotonic() + 5
    while (first := _post(d, jwt)).status_code == 402:  # the daemon sees the credit
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit"] == "2"
    assert _post(d, jwt).status_code == 200
    refused = _post(d, jwt)  # [wallet] rpm_limit = 2
    # one request in 30 s: the wait is what is left of 30 s since the first (a loaded
    # machine may have taken a few of them)
    assert refused.status_code == 429 and 20 <= int(refused.headers["retry-after"]) <= 30


def test_limiter_state_survives_sighup_and_a_changed_limit_applies(d: Daemon) -> None:
    keys: Limited = d.keys  # type: ignore[assignment]
    while _post(d, keys.rpm).status_code == 200:
        pass
    emptied = time.monotonic()
    table = d.config.parent / "keys.toml"
    reloads = len(d.proc.events("reload"))
    d.proc.popen.send_signal(signal.SIGHUP)  # the same table: the bucket stays empty
    _wait_reload(d, reloads + 1)
    # a bucket that started over would admit 60 now; this one admits only what refilled
    # since it was emptied (one a second), however long the reload took
    admitted = len(_until_refused(d, keys.rpm, 80)) - 1
    assert admitted <= 1 + int(time.monotonic() - emptied)
    time.sleep(2.1)  # two requests' worth of refill at 60/min
    table.write_text(keys.table(rpm=6))  # ten times slower: the refill is a share of it
    d.proc.popen.send_signal(signal.SIGHUP)
    _wait_reload(d, reloads + 2)
    r = _post(d, keys.rpm)
    assert r.headers["x-ratelimit-limit"] == "6"
    table.write_text(keys.table())
    d.proc.popen.send_signal(signal.SIGHUP)
    _wait_reload(d, reloads + 3)


def _wait_reload(d: Daemon, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(d.proc.events("reload")) < count:
        assert time.monotonic() < deadline, "no reload"
        time.sleep(0.02)
    assert d.proc.events("reload")[count - 1]["result"] == "ok"
