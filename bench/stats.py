"""Small statistics helpers shared by the load generator and the report (no I/O)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["QUANTILE_POINTS", "percentile", "quantiles", "spread", "summary_us"]

QUANTILE_POINTS = 101  # 0%, 1%, ... 100%: enough for a latency CDF plot


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of an already sorted sequence; 0 when empty."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values))))
    return float(sorted_values[index])


def quantiles(sorted_values: Sequence[float], points: int = QUANTILE_POINTS) -> list[float]:
    return [percentile(sorted_values, i / (points - 1)) for i in range(points)]


def summary_us(values_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in microseconds of nanosecond samples."""
    xs = sorted(v / 1000 for v in values_ns)
    return {
        "p50": round(percentile(xs, 0.50), 1),
        "p90": round(percentile(xs, 0.90), 1),
        "p99": round(percentile(xs, 0.99), 1),
        "p999": round(percentile(xs, 0.999), 1),
        "max": round(xs[-1], 1) if xs else 0.0,
        "mean": round(statistics.fmean(xs), 1) if xs else 0.0,
        "count": len(xs),
    }


def spread(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Median of repeated runs with min, max and the half-range as a percentage of the median."""
    xs = sorted(values)
    median = statistics.median(xs)
    half_range = (xs[-1] - xs[0]) / 2
    return {
        "median": round(median, 3),
        "min": round(xs[0], 3),
        "max": round(xs[-1], 3),
        "spread_pct": round(100 * half_range / abs(median), 1) if median else 0.0,
        "runs": [round(x, 3) for x in values],
    }
