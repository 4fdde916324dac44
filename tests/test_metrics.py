"""Metrics: the pure counters and their Prometheus text, and the admin listener on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from aroutd.metrics import Histogram, Metrics

from .support import bearer, daemon, request


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram(buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v)
    assert h.render("x") == [
        'x_bucket{le="0.1"} 2',
        'x_bucket{le="1"} 3',
        'x_bucket{le="+Inf"} 4',
        "x_sum 2.65",
        "x_count 4",
    ]


def test_render_counts_requests_failures_and_reloads() -> None:
    m = Metrics()
    m.observe(
        status=200, auth_method="bearer", duration_s=0.002, upstream_s=0.001, auth_failure=None
    )
    m.observe(
        status=401,
        auth_method=None,
        duration_s=0.0001,
        upstream_s=None,
        auth_failure='invalid "api" key',
    )
    m.reloads["ok"] += 1
    text = m.render(open_connections=3, keys_loaded=7)
    assert 'aroutd_requests_total{status="200",auth_method="bearer"} 1' in text
    assert 'aroutd_requests_total{status="401",auth_method="none"} 1' in text
    assert 'aroutd_auth_failures_total{reason="invalid \\"api\\" key"} 1' in text
    assert 'aroutd_reloads_total{result="ok"} 1' in text
    assert 'aroutd_reloads_total{result="error"} 0' in text
    assert "aroutd_request_duration_seconds_count 2" in text
    assert "aroutd_upstream_first_byte_seconds_count 1" in text
    assert "aroutd_open_connections 3" in text
    assert "aroutd_keys_loaded 7" in text
    assert text.endswith("\n")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/healthz", 200, id="healthz"),
        pytest.param("GET", "/metrics", 200, id="metrics"),
        pytest.param("POST", "/metrics", 405, id="post"),
        pytest.param("GET", "/v1/models", 404, id="api-path"),
    ],
)
async def test_admin_listener(tmp_path: Path, method: str, path: str, status: int) -> None:
    async with daemon(tmp_path, admin_listen=("127.0.0.1", 0)) as h:
        await request(h.port, "GET", "/v1/models", [bearer(h.keys.api)])
        await request(h.port, "GET", "/v1/models", [bearer("lr_live_" + "0" * 48)])
        r = await request(h.admin_port, method, path)
        assert r.status == status
        if path == "/metrics" and status == 200:
            assert r.header(b"content-type") == b"text/plain; version=0.0.4; charset=utf-8"
            text = r.body.decode()
            assert 'aroutd_requests_total{status="200",auth_method="bearer"} 1' in text
            assert 'aroutd_auth_failures_total{reason="invalid api key"} 1' in text
            assert "aroutd_keys_loaded 5" in text


def test_usage_metrics_are_bounded_labels() -> None:
    m = Metrics()
    m.observe_usage(
        provider="openai",
        model="openai/gpt-4o",
        tenant="acme",
        tokens={"input": 5, "output": 7, "cached_input": 0},
        usd=0.25,
        priced=True,
    )
    m.observe_usage(
        provider="openai",
        model="other",
        tenant="wallet",
        tokens={"input": 1, "output": 0, "cached_input": 0},
        usd=0.0,
        priced=False,
    )
    text = m.render(open_connections=0, keys_loaded=0)
    assert (
        'aroutd_tokens_total{provider="openai",model="openai/gpt-4o",direction="input"} 5' in text
    )
    assert (
        'aroutd_tokens_total{provider="openai",model="openai/gpt-4o",direction="output"} 7' in text
    )
    assert 'direction="cached_input"' not in text  # zero counts make no series
    assert 'aroutd_spend_usd_total{tenant="acme"} 0.25' in text
    assert 'aroutd_spend_usd_total{tenant="wallet"} 0' in text
    assert 'aroutd_unpriced_requests_total{provider="openai"} 1' in text
