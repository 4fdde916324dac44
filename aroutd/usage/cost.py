"""What a request cost (SPEC §9): tokens × ``[pricing]``, or the upstream's own figure.

Prices are USD per 1M tokens (``[pricing."provider/model"]``: ``input``, ``output``,
``cached_input``; cached input tokens cost ``input`` when ``cached_input`` is unset).
An upstream response header ``X-ARouter-Cost`` (USD, a plain decimal >= 0) overrides the
computed cost; one that is not such a number is ignored. An unpriced model costs 0 and
is reported as unpriced, for the metric and the log. Pure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from aroutd.config.values import Price

__all__ = ["Cost", "parse_cost_header", "request_cost"]

PER_TOKENS = 1_000_000
MAX_HEADER_COST = 1e9  # USD: more is not a price, it is a bug or an attack
_DECIMAL_RE = re.compile(rb"[0-9]{1,12}(\.[0-9]{1,12})?")


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    source: str  # "pricing" | "header" | "unpriced"


def parse_cost_header(value: bytes | None) -> float | None:
    """The USD amount of an ``X-ARouter-Cost`` value; None when absent or not a decimal."""
    if value is None:
        return None
    text = value.strip()
    if not _DECIMAL_RE.fullmatch(text):
        return None
    amount = float(text)
    return amount if math.isfinite(amount) and amount <= MAX_HEADER_COST else None


def request_cost(
    *,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    price: Price | None,
    header: bytes | None = None,
) -> Cost:
    """The cost of one request; ``input_tokens`` includes the cached ones."""
    from_header = parse_cost_header(header)
    if from_header is not None:
        return Cost(from_header, "header")
    if price is None:
        return Cost(0.0, "unpriced")
    cached = min(max(cached_input_tokens, 0), max(input_tokens, 0))
    fresh = max(input_tokens, 0) - cached
    cached_price = price.input if price.cached_input is None else price.cached_input
    usd = fresh * price.input + cached * cached_price + max(output_tokens, 0) * price.output
    return Cost(usd / PER_TOKENS, "pricing")
