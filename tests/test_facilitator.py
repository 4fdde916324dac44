"""The facilitator client (aroutd.shell.facilitator) against the fake facilitator, and the
pure reading of its answers (aroutd.x402.facilitator)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from aroutd.config.values import X402Config
from aroutd.shell.facilitator import Facilitator, FacilitatorDown
from aroutd.x402.facilitator import (
    FacilitatorError,
    SettleAnswer,
    VerifyAnswer,
    fee_payers,
    parse_settle,
    parse_verify,
)

from .fakefacilitator import FakeFacilitator, fake_facilitator, settled_transaction

PAYER = "0x857b06519E91e3A54538791bDbb0E22373e36b66"
PAYLOAD: dict[str, Any] = {
    "x402Version": 2,
    "accepted": {"scheme": "exact", "network": "eip155:84532"},
    "payload": {"signature": "0x00", "authorization": {"from": PAYER}},
}
REQUIREMENT = {"scheme": "exact", "network": "eip155:84532", "amount": "1000000"}
SOL_DEV = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
FEE_PAYER = "EwWqGE4ZFKLofuestmU4LDdK7XM1N4ALgdZccwYugwGd"


@pytest.fixture
def fake() -> Iterator[FakeFacilitator]:
    with fake_facilitator() as f:
        yield f


def _client(fake: FakeFacilitator, token: str = "", read_timeout_s: float = 5.0) -> Facilitator:
    cfg = X402Config(facilitator_url=fake.url + "/base/", facilitator_token=token)
    return Facilitator(cfg, read_timeout_s=read_timeout_s)


async def test_verify_settle_and_supported(fake: FakeFacilitator) -> None:
    fake.fee_payers[SOL_DEV] = FEE_PAYER
    fac = _client(fake, token="s3cret")
    assert await fac.verify(PAYLOAD, REQUIREMENT) == VerifyAnswer(valid=True, payer=PAYER)
    assert await fac.settle(PAYLOAD, REQUIREMENT) == SettleAnswer(
        success=True, transaction=settled_transaction(PAYLOAD), network="eip155:84532", payer=PAYER
    )
    assert await fac.supported_fee_payers() == {SOL_DEV: FEE_PAYER}
    assert fake.paths() == ["/base/verify", "/base/settle", "/base/supported"]
    _, body, headers = fake.calls[0]
    # our requirement, the client's payload as it came
    assert body == {"x402Version": 2, "paymentPayload": PAYLOAD, "paymentRequirements": REQUIREMENT}
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-type"] == "application/json"
    await fac.aclose()


async def test_negative_answers_are_results(fake: FakeFacilitator) -> None:
    fake.behaviour = {"verify": "invalid:insufficient_funds", "settle": "fail:transaction_failed"}
    fac = _client(fake)
    assert await fac.verify(PAYLOAD, REQUIREMENT) == VerifyAnswer(
        valid=False, reason="insufficient_funds", payer=PAYER
    )
    settled = await fac.settle(PAYLOAD, REQUIREMENT)
    assert (settled.success, settled.reason, settled.transaction) == (
        False,
        "transaction_failed",
        "",
    )


@pytest.mark.parametrize("how", ["500", "garbage", "drop", "timeout"])
async def test_a_failing_facilitator_is_down(fake: FakeFacilitator, how: str) -> None:
    fake.behaviour = {"verify": how, "settle": how}
    fac = _client(fake, read_timeout_s=0.5)
    with trio.fail_after(5):  # the client's own timeout ends "timeout", not this one
        with pytest.raises(FacilitatorDown) as info:
            await fac.verify(PAYLOAD, REQUIREMENT)
    assert (info.value.status, info.value.message) == (502, "payment facilitator unavailable")
    assert len(fake.calls) == 1  # never sent twice


async def test_an_unreachable_facilitator_is_down() -> None:
    with fake_facilitator() as gone:
        port = gone.port
    fac = Facilitator(X402Config(facilitator_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(FacilitatorDown):
        await fac.settle(PAYLOAD, REQUIREMENT)


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        pytest.param(200, b'{"isValid": true}', VerifyAnswer(valid=True), id="valid"),
        pytest.param(
            200,
            b'{"isValid": false}',
            VerifyAnswer(valid=False, reason="unexpected_verify_error"),
            id="no-reason",
        ),
        pytest.param(200, b'{"isValid": "yes"}', None, id="not-bool"),
        pytest.param(200, b"[]", None, id="array"),
        pytest.param(400, b'{"isValid": true}', None, id="status"),
        pytest.param(200, b"[" * 100_000, None, id="deep"),
        pytest.param(200, b'{"isValid": true, "x": "' + b"a" * 70_000 + b'"}', None, id="large"),
    ],
)
def test_parse_verify(status: int, body: bytes, want: VerifyAnswer | None) -> None:
    if want is None:
        with pytest.raises(FacilitatorError):
            parse_verify(status, body)
    else:
        assert parse_verify(status, body) == want


def test_parse_settle_needs_a_transaction_on_success() -> None:
    with pytest.raises(FacilitatorError):
        parse_settle(200, b'{"success": true, "transaction": ""}')
    assert parse_settle(200, b'{"success": false}').reason == "unexpected_settle_error"


def test_fee_payers_skips_what_is_not_one() -> None:
    kinds = [
        {"scheme": "exact", "network": SOL_DEV, "extra": {"feePayer": FEE_PAYER}},
        {"scheme": "exact", "network": "solana:x", "extra": {"feePayer": "not base58!"}},
        {"scheme": "upto", "network": "solana:y", "extra": {"feePayer": FEE_PAYER}},
        {"scheme": "exact", "network": "solana:z"},
        "junk",
    ]
    assert fee_payers(200, json.dumps({"kinds": kinds}).encode()) == {SOL_DEV: FEE_PAYER}
    assert fee_payers(200, b'{"kinds": 5}') == {}


@given(st.integers(100, 599), st.binary(max_size=300))
def test_answers_parse_or_raise_ours(status: int, body: bytes) -> None:
    for parse in (parse_verify, parse_settle, fee_payers):
        with contextlib.suppress(FacilitatorError):
            parse(status, body)
