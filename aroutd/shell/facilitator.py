"""The x402 facilitator client (SPEC §10): ``GET /supported``, ``POST /verify``,
``POST /settle`` on the project's own h11 client (:mod:`aroutd.shell.upstream`).

- A fresh connection for every call (``pool_size = 0``): the pool retries a request
  whose pooled connection failed before any answer byte, and a settle must never be
  sent twice on our initiative.
- Connect within ``CONNECT_TIMEOUT_S``, the whole answer within ``READ_TIMEOUT_S`` of
  silence, at most 64 KiB of it. ``[x402] facilitator_token`` goes as ``Authorization:
  Bearer …`` and is never logged.
- Every failure (unreachable, timeout, a non-200, a body that is not the documented
  JSON) is :class:`FacilitatorDown`: the client gets 502 and nothing is credited.
- The Solana fee payers of ``/supported`` are kept (:class:`FeePayers`) and refreshed
  in the background; until the first answer, or when it names none, Solana is left
  out of the challenge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import trio

from aroutd.config.values import UpstreamConfig, X402Config
from aroutd.errors import BadGateway, HTTPError
from aroutd.headers import JSON_CONTENT_TYPE
from aroutd.shell import logsink
from aroutd.shell.upstream import UpstreamBroken, UpstreamPool
from aroutd.x402.facilitator import (
    MAX_ANSWER_BYTES,
    FacilitatorError,
    SettleAnswer,
    VerifyAnswer,
    fee_payers,
    parse_settle,
    parse_verify,
    request_body,
)

__all__ = ["MSG_FACILITATOR", "Facilitator", "FacilitatorDown", "FeePayers", "refresh_fee_payers"]

Json = Mapping[str, Any]
MSG_FACILITATOR = "payment facilitator unavailable"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # a settlement waits for the chain
SUPPORTED_REFRESH_S = 600.0
SUPPORTED_RETRY_S = 30.0


class FacilitatorDown(BadGateway):
    """502: the facilitator could not be asked, or did not answer as documented."""

    def __init__(self) -> None:
        super().__init__(MSG_FACILITATOR)


def facilitator_upstream(cfg: X402Config, read_timeout_s: float = READ_TIMEOUT_S) -> UpstreamConfig:
    """The facilitator as an upstream of the h11 client (its URL was checked at parse)."""
    parts = urlsplit(cfg.facilitator_url)
    scheme = parts.scheme.lower()
    return UpstreamConfig(
        name="x402-facilitator",
        url=cfg.facilitator_url,
        scheme=scheme,
        host=parts.hostname or "",
        port=parts.port or (443 if scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        auth_header="Authorization",
        auth_value=f"Bearer {cfg.facilitator_token}" if cfg.facilitator_token else "",
        connect_timeout_s=CONNECT_TIMEOUT_S,
        read_timeout_s=read_timeout_s,
        pool_size=0,
    )


class Facilitator:
    def __init__(self, cfg: X402Config, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self._pool = UpstreamPool(facilitator_upstream(cfg, read_timeout_s))

    async def _call(self, method: bytes, path: str, body: bytes = b"") -> tuple[int, bytes]:
        up = self._pool.config
        headers = [(b"host", self._pool.host_header), (b"accept", b"application/json")]
        if up.auth_value:
            headers.append((up.auth_header.encode(), up.auth_value.encode()))
        if method == b"POST":
            headers += [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        target = (up.base_path + path).encode()
        try:
            async with self._pool.request(method, target, headers, body) as resp:
                data = b""
                async for chunks, _ in resp.iter_batches():
                    data += b"".join(chunks)
                    if len(data) > MAX_ANSWER_BYTES:
                        raise FacilitatorDown()
                return resp.status, data
        except (HTTPError, UpstreamBroken):  # 502 / 504 from the client, or a cut answer
            raise FacilitatorDown() from None

    async def _parsed(self, parse: Callable[[int, bytes], Any], *call: Any) -> Any:
        status, body = await self._call(*call)
        try:
            return parse(status, body)
        except FacilitatorError as exc:
            logsink.event("facilitator_error", call=call[1], why=str(exc))
            raise FacilitatorDown() from None

    async def verify(
        self, payload: Mapping[str, Any], requirement: Mapping[str, Any]
    ) -> VerifyAnswer:
        answer: VerifyAnswer = await self._parsed(
            parse_verify, b"POST", "/verify", request_body(payload, requirement)
        )
        return answer

    async def settle(
        self, payload: Mapping[str, Any], requirement: Mapping[str, Any]
    ) -> SettleAnswer:
        answer: SettleAnswer = await self._parsed(
            parse_settle, b"POST", "/settle", request_body(payload, requirement)
        )
        return answer

    async def supported_fee_payers(self) -> dict[str, str]:
        payers: dict[str, str] = await self._parsed(fee_payers, b"GET", "/supported")
        return payers

    async def aclose(self) -> None:
        await self._pool.aclose()


class FeePayers:
    """The Solana fee payer per network, as the facilitator last said."""

    def __init__(self) -> None:
        self.by_network: dict[str, str] = {}


async def refresh_fee_payers(fac: Facilitator, payers: FeePayers, wanted: bool) -> None:
    """Ask ``/supported`` now and every ``SUPPORTED_REFRESH_S`` (``SUPPORTED_RETRY_S``
    after a failure, keeping what was known); runs for the daemon's life."""
    if not wanted:
        return
    failing = False
    while True:
        try:
            payers.by_network = await fac.supported_fee_payers()
        except FacilitatorDown:
            if not failing:
                logsink.event("facilitator_supported_failed")
            failing = True
            await trio.sleep(SUPPORTED_RETRY_S)
            continue
        failing = False
        await trio.sleep(SUPPORTED_REFRESH_S)
