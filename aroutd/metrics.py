"""Prometheus metrics (SPEC §11), kept in memory and rendered in the text format 0.0.4.

Pure: the request path calls :meth:`Metrics.observe` with what the access log
records; the admin listener renders :meth:`Metrics.render`. Label values come
from a closed set (statuses, auth methods, failure reasons, reload results),
never from client input, so the number of series stays bounded: a model is a label
only when ``[pricing]`` names it (else ``other``), a tenant only when the key table
names it (every wallet is counted under ``wallet``).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS_S", "Histogram", "Metrics"]

# seconds: from a fast cached answer to a long streamed completion
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self, name: str) -> list[str]:
        lines, running = [], 0
        bounds = [_num(b) for b in self.buckets] + ["+Inf"]
        for le, count in zip(bounds, self.counts, strict=True):
            running += count
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        lines += [f"{name}_sum {_num(self.total)}", f"{name}_count {self.n}"]
        return lines


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


@dataclass(slots=True)
class Metrics:
    requests: Counter[tuple[int, str]] = field(default_factory=Counter)  # (status, auth method)
    auth_failures: Counter[str] = field(default_factory=Counter)  # reason
    reloads: Counter[str] = field(default_factory=Counter)  # "ok" | "error"
    # faults caught by a connection's barrier (SPEC §6): "request" | "connection"
    internal_errors: Counter[str] = field(default_factory=Counter)
    duration: Histogram = field(default_factory=Histogram)
    upstream: Histogram = field(default_factory=Histogram)  # to the upstream's first byte
    # SPEC §9, §11: (provider, model label, direction) -> tokens; tenant label -> USD
    tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    spend: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    unpriced: Counter[str] = field(default_factory=Counter)  # provider -> requests
    # SPEC §10: x402 payments by outcome (credited, refused, failed, replayed, unknown, …)
    payments: Counter[str] = field(default_factory=Counter)
    payments_usd: float = 0.0  # USD credited by x402 payments
    # SPEC §9: requests refused by a rate limit, by (reason, principal kind)
    rate_limited: Counter[tuple[str, str]] = field(default_factory=Counter)

    def observe(
        self,
        *,
        status: int,
        auth_method: str | None,
        duration_s: float,
        upstream_s: float | None,
        auth_failure: str | None,
    ) -> None:
        self.requests[(status, auth_method or "none")] += 1
        self.duration.observe(duration_s)
        if upstream_s is not None:
            self.upstream.observe(upstream_s)
        if auth_failure is not None:
            self.auth_failures[auth_failure] += 1

    def observe_usage(
        self,
        *,
        provider: str,
        model: str,
        tenant: str,
        tokens: dict[str, int],
        usd: float,
        priced: bool,
    ) -> None:
        """One metered response: ``model`` and ``tenant`` are labels already bounded by the
        caller (see the module docstring); ``tokens`` maps a direction to a count."""
        for direction, n in tokens.items():
            if n:
                self.tokens[(provider, model, direction)] += n
        self.spend[tenant] += usd
        if not priced:
            self.unpriced[provider] += 1

    def render(
        self,
        *,
        open_connections: int,
        keys_loaded: int,
        store_keys: int = 0,
        usage_pending: int = 0,
    ) -> str:
        out = [
            "# HELP aroutd_requests_total Requests answered, by status and auth method.",
            "# TYPE aroutd_requests_total counter",
        ]
        for (status, method), n in sorted(self.requests.items()):
            out.append(f'aroutd_requests_total{{status="{status}",auth_method="{method}"}} {n}')
        out += [
            "# HELP aroutd_auth_failures_total Failed authentications, by reason.",
            "# TYPE aroutd_auth_failures_total counter",
        ]
        for reason, n in sorted(self.auth_failures.items()):
            out.append(f'aroutd_auth_failures_total{{reason="{_label(reason)}"}} {n}')
        out += [
            "# HELP aroutd_reloads_total Key table reloads, by result.",
            "# TYPE aroutd_reloads_total counter",
        ]
        for result in ("ok", "error"):
            out.append(f'aroutd_reloads_total{{result="{result}"}} {self.reloads[result]}')
        out += [
            "# HELP aroutd_internal_errors_total Faults caught by a connection's barrier.",
            "# TYPE aroutd_internal_errors_total counter",
        ]
        for where in ("request", "connection"):
            n = self.internal_errors[where]
            out.append(f'aroutd_internal_errors_total{{where="{where}"}} {n}')
        out += [
            "# HELP aroutd_tokens_total Tokens reported by upstreams, by provider, model"
            " and direction.",
            "# TYPE aroutd_tokens_total counter",
            *(
                f'aroutd_tokens_total{{provider="{_label(p)}",model="{_label(m)}",'
                f'direction="{d}"}} {n}'
                for (p, m, d), n in sorted(self.tokens.items())
            ),
            "# HELP aroutd_spend_usd_total Cost of the requests served, by tenant.",
            "# TYPE aroutd_spend_usd_total counter",
            *(
                f'aroutd_spend_usd_total{{tenant="{_label(t)}"}} {_num(usd)}'
                for t, usd in sorted(self.spend.items())
            ),
            "# HELP aroutd_unpriced_requests_total Metered requests for a model [pricing]"
            " does not name (they cost 0), by provider.",
            "# TYPE aroutd_unpriced_requests_total counter",
            *(
                f'aroutd_unpriced_requests_total{{provider="{_label(p)}"}} {n}'
                for p, n in sorted(self.unpriced.items())
            ),
            "# HELP aroutd_payments_total x402 payments, by outcome.",
            "# TYPE aroutd_payments_total counter",
            *(
                f'aroutd_payments_total{{outcome="{o}"}} {n}'
                for o, n in sorted(self.payments.items())
            ),
            "# HELP aroutd_payments_usd_total USD credited to wallets by x402 payments.",
            "# TYPE aroutd_payments_usd_total counter",
            f"aroutd_payments_usd_total {_num(self.payments_usd)}",
            "# HELP aroutd_rate_limited_total Requests refused by a rate limit, by limit and"
            " principal kind.",
            "# TYPE aroutd_rate_limited_total counter",
            *(
                f'aroutd_rate_limited_total{{reason="{r}",principal="{k}"}} {n}'
                for (r, k), n in sorted(self.rate_limited.items())
            ),
            "# HELP aroutd_request_duration_seconds Time from request head to last byte.",
            "# TYPE aroutd_request_duration_seconds histogram",
            *self.duration.render("aroutd_request_duration_seconds"),
            "# HELP aroutd_upstream_first_byte_seconds Time to the upstream answer's head.",
            "# TYPE aroutd_upstream_first_byte_seconds histogram",
            *self.upstream.render("aroutd_upstream_first_byte_seconds"),
            "# HELP aroutd_open_connections Client connections open now.",
            "# TYPE aroutd_open_connections gauge",
            f"aroutd_open_connections {open_connections}",
            "# HELP aroutd_keys_loaded Keys in the key table now.",
            "# TYPE aroutd_keys_loaded gauge",
            f"aroutd_keys_loaded {keys_loaded}",
            "# HELP aroutd_store_keys Keys of the management API (state store) held now.",
            "# TYPE aroutd_store_keys gauge",
            f"aroutd_store_keys {store_keys}",
            "# HELP aroutd_usage_pending_rows Usage rows and debit lines added here and not"
            " yet committed to the state store.",
            "# TYPE aroutd_usage_pending_rows gauge",
            f"aroutd_usage_pending_rows {usage_pending}",
        ]
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    # Prometheus text format: backslash, double quote and newline escaped
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
