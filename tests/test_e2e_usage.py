"""End to end: usage metered as it streams, priced, logged, counted against limits.

The real daemon and the bundled mock upstream (deterministic usage: prompt tokens =
characters // 4 + 1, completion tokens = 7), driven by the openai, anthropic and
google-genai SDKs, streaming and not; a limit tripping on the following request;
usage surviving SIGKILL and restart.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.lib.streaming import MessageStreamManager
from google import genai
from google.genai import types as genai_types
from openai.types.chat import ChatCompletionMessageParam

from .e2e import Daemon, aroutd, mock_upstream, write_config
from .support import Keys

HELLO = "Hello there, proxy!"  # 19 characters: 5 prompt tokens, 7 completion tokens
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": HELLO}]
PRICING = """
[pricing."openai/gpt-4o-mini"]
input = 0.15
output = 0.60
cached_input = 0.075

[pricing."anthropic/claude-sonnet-4"]
input = 3.0
output = 15.0

[pricing."google/gemini-2.0-flash"]
input = 0.10
output = 0.40
"""
GPT_COST = (5 * 0.15 + 7 * 0.60) / 1e6


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Keys]]:
    keys = Keys()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        cfg.write_text(cfg.read_text() + PRICING)
        yield cfg, keys


def oai(d: Daemon, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.base}/v1", api_key=key, max_retries=0)


def access_lines(d: Daemon, path: str) -> list[dict[str, Any]]:
    out = []
    for line in d.proc.text().splitlines():
        if line.startswith("{") and '"request_id"' in line:
            rec = json.loads(line)
            if rec["path"].startswith(path):
                out.append(rec)
    return out


def claude_stream(d: Daemon, key: str) -> MessageStreamManager:
    claude = anthropic.Anthropic(base_url=d.base, api_key=key, max_retries=0)
    return claude.messages.stream(
        model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": HELLO}]
    )


def line(d: Daemon, path: str, n: int) -> dict[str, Any]:
    """The ``n``-th access line (1-based) for ``path``, once written: the client has its
    answer a moment before the daemon logs it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = access_lines(d, path)
        if len(lines) >= n:
            return lines[n - 1]
        time.sleep(0.02)
    seen = [rec["path"] for rec in access_lines(d, "")]
    raise AssertionError(f"no access line {n} for {path} among {seen}")


def test_openai_usage_and_cost_streaming_or_not(setup: tuple[Path, Keys]) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        oai(d, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        rec = line(d, "/v1/chat/completions", 1)
        assert rec["usage"]["input_tokens"] == 5 and rec["usage"]["output_tokens"] == 7
        assert rec["cost"] == pytest.approx(GPT_COST)
        # a stream without include_usage: aroutd asks for usage and strips that chunk
        chunks = list(
            oai(d, keys.api).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
        )
        assert chunks and all(c.usage is None for c in chunks)
        assert all(c.choices for c in chunks)  # no usage-only chunk reached the client
        rec = line(d, "/v1/chat/completions", 2)
        assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (5, 7)
        assert rec["cost"] == pytest.approx(GPT_COST)
        # the client asked: it gets the usage chunk
        chunks = list(
            oai(d, keys.api).chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = [c.usage for c in chunks if c.usage is not None]
        assert len(usage) == 1 and usage[0].prompt_tokens == 5
        assert line(d, "/v1/chat/completions", 3)["cost"] == pytest.approx(GPT_COST)


def test_anthropic_and_gemini_usage(setup: tuple[Path, Keys]) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        with claude_stream(d, keys.api) as stream:
            final = stream.get_final_message()
        rec = line(d, "/v1/messages", 1)
        assert rec["usage"]["input_tokens"] == final.usage.input_tokens
        assert rec["usage"]["output_tokens"] == final.usage.output_tokens == 7
        expected = (final.usage.input_tokens * 3.0 + 7 * 15.0) / 1e6
        assert rec["cost"] == pytest.approx(expected)
        client = genai.Client(
            api_key=keys.api, http_options=genai_types.HttpOptions(base_url=d.base)
        )
        reply = client.models.generate_content(model="gemini-2.0-flash", contents=HELLO)
        meta = reply.usage_metadata
        assert meta is not None and meta.prompt_token_count is not None
        rec = line(d, "/v1/models/gemini-2.0-flash:generateContent", 1)
        assert rec["usage"]["input_tokens"] == meta.prompt_token_count
        out = meta.candidates_token_count or 0
        assert rec["cost"] == pytest.approx((meta.prompt_token_count * 0.10 + out * 0.40) / 1e6)


def _mgmt(d: Daemon, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, f"{d.base}{path}", json=body, headers={"Authorization": f"Bearer {d.keys.mgmt}"}
    )


def test_a_limit_trips_on_the_following_request_and_usage_survives_sigkill(
    setup: tuple[Path, Keys],
) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        made = _mgmt(d, "POST", "/api/v1/keys", {"name": "capped", "limit": GPT_COST * 1.5})
        key, digest = made.json()["key"], made.json()["data"]["hash"]
        oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # in budget
        with pytest.raises(openai.PermissionDeniedError) as refused:
            oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert refused.value.body == {
            "message": "spending limit exceeded",
            "type": "forbidden_error",
            "code": "quota_exceeded",
        }
        mine = httpx.get(f"{d.base}/v1/key", headers={"Authorization": f"Bearer {key}"})
        data = mine.json()["data"]
        assert data["usage"] == pytest.approx(2 * GPT_COST)
        assert data["usage_daily"] == data["usage_monthly"] == data["usage"]
        assert data["limit_remaining"] == 0
        listed = _mgmt(d, "GET", f"/api/v1/keys/{digest}").json()["data"]
        assert listed["usage"] == pytest.approx(2 * GPT_COST)
        time.sleep(0.3)  # more than the 100 ms the commit may take
        d.proc.popen.send_signal(signal.SIGKILL)
        d.proc.popen.wait(10)
    with aroutd(cfg, keys) as d:
        again = httpx.get(f"{d.base}/v1/key", headers={"Authorization": f"Bearer {key}"})
        assert again.json()["data"]["usage"] == pytest.approx(2 * GPT_COST)
        with pytest.raises(openai.PermissionDeniedError):
            oai(d, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_sighup_rereads_pricing_and_keeps_it_when_the_config_is_broken(
    setup: tuple[Path, Keys],
) -> None:
    cfg, keys = setup
    original = cfg.read_text()
    with aroutd(cfg, keys) as d:
        oai(d, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert line(d, "/v1/chat/completions", 1)["cost"] == pytest.approx(GPT_COST)
        cfg.write_text(original.replace("output = 0.60", "output = 6.00"))
        d.proc.popen.send_signal(signal.SIGHUP)
        d.proc.wait_for('"event":"pricing_reload","result":"ok"')
        oai(d, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        doubled = (5 * 0.15 + 7 * 6.00) / 1e6
        assert line(d, "/v1/chat/completions", 2)["cost"] == pytest.approx(doubled)
        cfg.write_text(original.replace("output = 0.60", 'output = "lots"'))
        d.proc.popen.send_signal(signal.SIGHUP)
        logged = d.proc.wait_for('"event":"pricing_reload","result":"error"')
        assert "aroutd.toml:" in logged and "output" in logged  # FILE:LINE and the key
        oai(d, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert line(d, "/v1/chat/completions", 3)["cost"] == pytest.approx(doubled)


def test_a_client_that_leaves_mid_stream_is_charged_for_what_was_reported(
    tmp_path: Path,
) -> None:
    keys = Keys()
    with mock_upstream("--event-delay-ms", "300") as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        cfg.write_text(cfg.read_text() + PRICING)
        with aroutd(cfg, keys) as d:
            with claude_stream(d, keys.api) as stream:
                for event in stream:
                    if event.type == "message_start":
                        break  # leave after the first event: message_start has the input
            rec = line(d, "/v1/messages", 1)
            assert rec["error"] == "client gone"
            assert rec["usage"]["input_tokens"] > 0 and rec["usage"]["output_tokens"] < 7
            assert rec["cost"] > 0


def test_gemini_streaming_usage(setup: tuple[Path, Keys]) -> None:
    cfg, keys = setup
    with aroutd(cfg, keys) as d:
        client = genai.Client(
            api_key=keys.api, http_options=genai_types.HttpOptions(base_url=d.base)
        )
        last = None
        for part in client.models.generate_content_stream(model="gemini-2.0-flash", contents=HELLO):
            last = part.usage_metadata or last
        assert last is not None and last.prompt_token_count is not None
        rec = line(d, "/v1/models/gemini-2.0-flash:streamGenerateContent", 1)
        assert rec["usage"]["input_tokens"] == last.prompt_token_count
        assert rec["usage"]["output_tokens"] == (last.candidates_token_count or 0)


def test_two_instances_on_one_state_file_add_up(tmp_path: Path) -> None:
    """A tenant limit spent through two daemons sharing the sqlite file: each sees the
    other's usage within a second."""
    keys = Keys()
    with mock_upstream() as (_, up_port):
        cfg = write_config(tmp_path, up_port, keys)
        table = (tmp_path / "keys.toml").read_text()
        limited = f"limit = {GPT_COST * 2.5!r}" + chr(10)
        (tmp_path / "keys.toml").write_text(
            table.replace("[tenants.acme]\n", "[tenants.acme]\n" + limited, 1)
        )
        cfg.write_text(cfg.read_text() + PRICING)
        with aroutd(cfg, keys) as a, aroutd(cfg, keys) as b:
            oai(a, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            for _ in range(2):
                oai(b, keys.narrow).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            time.sleep(1.0)  # B's commit (50 ms) and A's poll of the store (0.5 s)
            # A alone has spent 1x of the 2.5x: only B's 2x make the tenant reach its limit
            with pytest.raises(openai.PermissionDeniedError) as caught:
                oai(a, keys.api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            refused = caught.value.body
            assert refused == {
                "message": "spending limit exceeded",
                "type": "forbidden_error",
                "code": "quota_exceeded",
            }
