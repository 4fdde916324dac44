"""Usage metering on the relay path, and what a finished response is charged (SPEC §9).

A :class:`Metering` rides along with one upstream answer: the relay hands it the body
chunks of each receive as they pass (:meth:`Metering.feed_batch`), which feeds the
pure meter (:mod:`aroutd.usage.parse`) the upstream's bytes and returns the bytes to
send on, without holding anything back. When aroutd asked an OpenAI stream for usage the
client did not ask for, the usage-only chunk is removed on the way
(:mod:`aroutd.usage.include_usage`). :func:`account` then prices what was reported
(``[pricing]`` or the upstream's ``X-ARouter-Cost``), puts it in the access log and
the metrics, and adds it to the usage book for the key and its tenant, or for the
wallet (with a debit line of its transactions log); the book is committed to the
store in the background (:mod:`aroutd.shell.usagesync`).

A response cut short (the client left, the upstream died) is charged for what the
upstream had reported by then.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aroutd.accesslog import AccessRecord
from aroutd.headers import Headers, first_value
from aroutd.principal import Principal
from aroutd.shell.ratelimits import record_tokens
from aroutd.shell.runtime import Runtime
from aroutd.usage.book import key_subject, tenant_subject, wallet_subject
from aroutd.usage.cost import request_cost
from aroutd.usage.include_usage import UsageChunkFilter
from aroutd.usage.ledger import debit_line
from aroutd.usage.parse import Usage, UsageMeter

__all__ = ["Metering", "account", "response_shape"]

Shape = Literal["openai", "anthropic", "gemini"]


def response_shape(path: str) -> Shape:
    """Which provider's API shape a forwarded path answers in."""
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    if path.endswith("/messages") or "/messages?" in path:
        return "anthropic"
    return "openai"


@dataclass(slots=True)
class Metering:
    shape: Shape
    strip: bool = False  # remove the usage-only chunk aroutd asked for
    meter: UsageMeter | None = None
    chunk_filter: UsageChunkFilter | None = None
    cost_header: bytes | None = field(default=None, repr=False)

    def start(self, headers: Headers) -> None:
        """The answer's head has come: meter its body from now on."""
        content_type = first_value(headers, b"content-type")
        self.meter = UsageMeter(self.shape, content_type=content_type)
        self.cost_header = first_value(headers, b"x-arouter-cost")
        if self.strip and content_type is not None and b"text/event-stream" in content_type:
            self.chunk_filter = UsageChunkFilter()

    def feed_batch(self, chunks: list[bytes]) -> list[bytes]:
        """One receive's body chunks, metered as one piece; the chunks to send on.

        Unchanged without the usage-chunk filter, else its output in one chunk (the
        same bytes either way): one call per receive, not per chunk, lets the meter and
        the filter skip the many whole content events of a batch unread.
        """
        if not chunks or (self.meter is None and self.chunk_filter is None):
            return chunks
        joined = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.meter is not None:
            self.meter.feed(joined)
        return chunks if self.chunk_filter is None else [self.chunk_filter.feed(joined)]

    def flush(self) -> bytes:
        return b"" if self.chunk_filter is None else self.chunk_filter.flush()

    def usage(self) -> Usage | None:
        return None if self.meter is None else self.meter.usage()


def account(rt: Runtime, principal: Principal, rec: AccessRecord, metering: Metering) -> None:
    """Charge a finished (or cut) response for what its upstream reported."""
    usage = metering.usage()
    if usage is None and metering.cost_header is None:
        return
    usage = usage or Usage()
    model = rec.model or ""
    price = rt.config.pricing.get(model)
    cost = request_cost(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        price=price,
        header=metering.cost_header,
    )
    rec.usage = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }
    rec.cost = round(cost.usd, 10)
    known_tenant = principal.kind != "wallet" and principal.tenant in rt.keytable.tenants
    rt.metrics.observe_usage(
        provider=rec.provider or "",
        model=model if price is not None else "other",
        tenant=principal.tenant if known_tenant else "wallet",
        tokens={
            "input": usage.input_tokens,
            "output": usage.output_tokens,
            "cached_input": usage.cached_input_tokens,
        },
        usd=cost.usd,
        priced=cost.source != "unpriced",
    )
    if cost.source == "unpriced":
        rt.log_unpriced(model)
    now = datetime.now(UTC)
    debit = None
    if principal.key_hash is not None:
        subjects = [key_subject(principal.key_hash), tenant_subject(principal.tenant)]
    elif principal.wallet is not None:
        subjects = [wallet_subject(principal.wallet)]
        if cost.usd > 0:
            debit = debit_line(
                tx_id=f"txn_{secrets.token_hex(12)}",
                account=principal.wallet,
                request_id=rec.request_id,
                model=model,
                usage=usage,
                usd=cost.usd,
                now=now,
            )
    else:
        return
    if principal.rate_limits:
        record_tokens(rt, principal, usage.input_tokens + usage.output_tokens)
    rt.usage.add(
        subjects,
        now,
        usd=cost.usd,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        debit=debit,
    )
