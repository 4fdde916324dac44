"""Spending limits (SPEC §9): is a key, or its tenant, at its limit before forwarding?

A limit is USD per period (``limit_reset`` daily, weekly from Monday, monthly from the
1st, UTC; none: lifetime). A request is refused once the usage of the current period
has *reached* the limit. Requests already in flight finish and are charged, so a limit
is a soft cap: the overshoot is at most what the requests in flight at that moment
cost (documented in the README). Pure.
"""

from __future__ import annotations

from aroutd.errors import Forbidden
from aroutd.usage.book import Spent

__all__ = ["MSG_QUOTA", "Layer", "check_spend"]

MSG_QUOTA = "spending limit exceeded"
Layer = tuple[float | None, str | None, Spent]  # limit, limit_reset, what was spent


def check_spend(layers: list[Layer]) -> None:
    """``layers``: (limit, limit_reset, spent) for the key, then the tenant; raise the
    403 ``quota_exceeded`` of SPEC §9 when any is at its limit."""
    for limit, reset, spent in layers:
        if limit is not None and spent.of(reset) >= limit:
            raise Forbidden(MSG_QUOTA, code="quota_exceeded")
