"""aroutd.usage.periods and cost: the spending periods in UTC, and what a request cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from aroutd.config.values import Price
from aroutd.usage.cost import Cost, parse_cost_header, request_cost
from aroutd.usage.periods import period_key, period_start

WED = datetime(2026, 12, 2, 15, 30, 7, 123, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("reset", "now", "start", "key"),
    [
        (None, WED, None, "lifetime"),
        ("daily", WED, datetime(2026, 12, 2, tzinfo=UTC), "daily:2026-12-02"),
        ("weekly", WED, datetime(2026, 11, 30, tzinfo=UTC), "weekly:2026-11-30"),
        ("monthly", WED, datetime(2026, 12, 1, tzinfo=UTC), "monthly:2026-12-01"),
        # Monday 00:00 is the new week; Sunday 23:59:59 is still the old one
        (
            "weekly",
            datetime(2026, 11, 30, tzinfo=UTC),
            datetime(2026, 11, 30, tzinfo=UTC),
            "weekly:2026-11-30",
        ),
        (
            "weekly",
            datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 11, 23, tzinfo=UTC),
            "weekly:2026-11-23",
        ),
        # a week across a year end, a month end
        (
            "weekly",
            datetime(2027, 1, 1, tzinfo=UTC),
            datetime(2026, 12, 28, tzinfo=UTC),
            "weekly:2026-12-28",
        ),
        (
            "monthly",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            "monthly:2026-12-01",
        ),
        # another offset is converted to UTC first: 01:00 at +02:00 is yesterday 23:00 UTC
        (
            "daily",
            datetime(2026, 12, 2, 1, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 12, 1, tzinfo=UTC),
            "daily:2026-12-01",
        ),
    ],
)
def test_periods(reset: str | None, now: datetime, start: datetime | None, key: str) -> None:
    assert period_start(reset, now) == start
    assert period_key(reset, now) == key


def test_an_unknown_reset_is_a_bug() -> None:
    with pytest.raises(ValueError, match="yearly"):
        period_start("yearly", WED)


GPT4O = Price(input=2.50, output=10.00, cached_input=1.25)


@pytest.mark.parametrize(
    ("tokens", "price", "header", "cost"),
    [
        ((1000, 0, 500), GPT4O, None, Cost(0.0025 + 0.005, "pricing")),
        ((1000, 400, 500), GPT4O, None, Cost((600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6, "pricing")),
        ((1000, 400, 0), Price(input=3.0, output=15.0), None, Cost(1000 * 3.0 / 1e6, "pricing")),
        ((1000, 5000, 0), GPT4O, None, Cost(1000 * 1.25 / 1e6, "pricing")),  # cached capped
        ((10, 0, 10), None, None, Cost(0.0, "unpriced")),
        ((10, 0, 10), None, b"0.0123", Cost(0.0123, "header")),
        ((10, 0, 10), GPT4O, b" 2 ", Cost(2.0, "header")),
        ((10, 0, 10), GPT4O, b"-1", Cost((10 * 2.5 + 10 * 10) / 1e6, "pricing")),
        ((10, 0, 10), GPT4O, b"1e3", Cost((10 * 2.5 + 10 * 10) / 1e6, "pricing")),
        ((10, 0, 10), GPT4O, b"nan", Cost((10 * 2.5 + 10 * 10) / 1e6, "pricing")),
        ((-5, -1, -9), GPT4O, None, Cost(0.0, "pricing")),
    ],
)  # fmt: skip
def test_cost(
    tokens: tuple[int, int, int], price: Price | None, header: bytes | None, cost: Cost
) -> None:
    got = request_cost(
        input_tokens=tokens[0],
        cached_input_tokens=tokens[1],
        output_tokens=tokens[2],
        price=price,
        header=header,
    )
    assert got.source == cost.source
    assert got.usd == pytest.approx(cost.usd, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("value", "amount"),
    [(None, None), (b"", None), (b"0", 0.0), (b"12.5", 12.5), (b"1" * 13, None), (b"0x10", None)],
)
def test_cost_header(value: bytes | None, amount: float | None) -> None:
    assert parse_cost_header(value) == amount
