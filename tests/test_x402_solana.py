"""aroutd.x402.solana: the v0 decoder, ATA derivation and local verification (solders builds)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction, VersionedTransaction

from aroutd.auth.solana import b58decode, b58encode
from aroutd.x402 import networks, reasons, solana
from aroutd.x402.payload import PaymentPayload, SolanaPayload
from aroutd.x402.reasons import Refused, Verified

VECTORS = json.loads((Path(__file__).parent / "vectors" / "x402_solana.json").read_text())
NETWORK = networks.SOLANA_DEVNET.caip2
MINT = Pubkey.from_string(networks.SOLANA_DEVNET.usdc_mint)
OTHER_MINT = Pubkey.from_string(networks.SOLANA_MAINNET.usdc_mint)
TOKEN = Pubkey.from_bytes(solana.TOKEN_PROGRAM)
TOKEN_2022 = Pubkey.from_bytes(solana.TOKEN_2022_PROGRAM)
BUDGET = Pubkey.from_bytes(solana.COMPUTE_BUDGET_PROGRAM)
MEMO = Pubkey.from_bytes(solana.MEMO_PROGRAM)
LIGHTHOUSE = Pubkey.from_bytes(solana.LIGHTHOUSE_PROGRAM)
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
FACILITATOR, PAYER, SELLER = (Keypair.from_seed(bytes([b]) * 32) for b in (0x11, 0x22, 0x33))
BLOCKHASH = Hash(bytes([0x44]) * 32)


def requirement(**change: Any) -> dict[str, Any]:
    req = {
        "scheme": "exact",
        "network": NETWORK,
        "amount": "1000000",
        "asset": str(MINT),
        "payTo": str(SELLER.pubkey()),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": str(FACILITATOR.pubkey())},
    }
    return req | change


def limit_ix(units: int = 20000) -> Instruction:
    return Instruction(BUDGET, bytes([2]) + units.to_bytes(4, "little"), [])


def price_ix(micro_lamports: int = 1) -> Instruction:
    return Instruction(BUDGET, bytes([3]) + micro_lamports.to_bytes(8, "little"), [])


@dataclass(frozen=True, kw_only=True)
class Build:
    """One transaction, as x402 2.25's ExactSvmScheme client lays it out, with knobs."""

    fee_payer: Keypair = FACILITATOR
    authority: Keypair = PAYER
    mint: Pubkey = MINT
    program: Pubkey = TOKEN
    destination: Pubkey | None = None  # None: the seller's ATA
    amount: int = 1000000
    decimals: int = 6
    authority_signs: bool = True
    price: int = 1
    head: tuple[Instruction, ...] | None = None  # None: limit + price
    extra: tuple[Instruction, ...] = field(
        default_factory=lambda: (Instruction(MEMO, b"ab" * 16, []),)
    )
    lookups: tuple[AddressLookupTableAccount, ...] = ()
    signature: str = "good"  # good | missing | wrong-message

    def transfer(self) -> Instruction:
        source = get_associated_token_address(self.authority.pubkey(), self.mint, self.program)
        dest = self.destination or get_associated_token_address(
            SELLER.pubkey(), self.mint, self.program
        )
        data = bytes([12]) + self.amount.to_bytes(8, "little") + bytes([self.decimals])
        return Instruction(
            self.program,
            data,
            [
                AccountMeta(source, False, True),
                AccountMeta(self.mint, False, False),
                AccountMeta(dest, False, True),
                AccountMeta(self.authority.pubkey(), self.authority_signs, False),
            ],
        )

    def bytes(self) -> bytes:
        head = self.head if self.head is not None else (limit_ix(), price_ix(self.price))
        ixs = [*head, self.transfer(), *self.extra]
        message = MessageV0.try_compile(self.fee_payer.pubkey(), ixs, list(self.lookups), BLOCKHASH)
        n = message.header.num_required_signatures
        signatures = [Signature.default()] * n
        keys = list(message.account_keys)
        if self.authority_signs and self.authority.pubkey() in keys[:n]:
            signed = to_bytes_versioned(message) if self.signature != "wrong-message" else b"other"
            sig = self.authority.sign_message(signed)
            signatures[keys.index(self.authority.pubkey())] = (
                sig if self.signature != "missing" else Signature.default()
            )
        return bytes(VersionedTransaction.populate(message, signatures))


def payment(raw: bytes, network: str = NETWORK) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2,
        scheme="exact",
        network=network,
        accepted=requirement(),
        payload=SolanaPayload(transaction=raw),
        resource=None,
        extensions=None,
        raw={},
    )


def verify(raw: bytes, req: dict[str, Any] | None = None) -> Verified | Refused:
    return solana.verify_solana(payment(raw), req or requirement())


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=f"{v['owner'][:6]}-{v['mint'][:4]}-{v['token_program'][:6]}")
        for v in VECTORS["ata"]
    ],
)
def test_ata_vectors(vector: dict[str, str]) -> None:
    got = solana.associated_token_address(
        b58decode(vector["owner"]), b58decode(vector["mint"]), b58decode(vector["token_program"])
    )
    assert b58encode(got) == vector["ata"]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from([TOKEN, TOKEN_2022]))
def test_ata_and_bump_agree_with_solders(owner: bytes, program: Pubkey) -> None:
    seeds = [owner, bytes(program), bytes(MINT)]
    expected, bump = Pubkey.find_program_address(seeds, Pubkey.from_bytes(solana.ATA_PROGRAM))
    assert solana.find_program_address(seeds, solana.ATA_PROGRAM) == (bytes(expected), bump)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_on_curve_agrees_with_solders(point: bytes) -> None:
    assert solana.is_on_curve(point) == Pubkey.from_bytes(point).is_on_curve()


def test_libsodium_is_valid_point_is_not_the_solana_rule() -> None:
    """Why is_on_curve is not crypto_core_ed25519_is_valid_point: the subgroup check."""
    points = [os.urandom(32) for _ in range(400)]
    differ = [
        p
        for p in points
        if solana.is_on_curve(p) != nacl.bindings.crypto_core_ed25519_is_valid_point(p)
    ]
    assert len(differ) > 50  # about 7/16 of random bytes are curve points outside the subgroup
    assert all(Pubkey.from_bytes(p).is_on_curve() for p in differ)


def test_decodes_the_vector_transaction() -> None:
    t = VECTORS["transaction"]
    tx = solana.decode_transaction(base64.b64decode(t["base64"]))
    assert isinstance(tx, solana.SolanaTransaction)
    assert (tx.required_signatures, len(tx.signatures), tx.lookup_count) == (2, 2, 0)
    assert b58encode(tx.account_keys[0]) == t["fee_payer"]
    assert tx.signatures[0] == bytes(64) and any(tx.signatures[1])
    assert tx.recent_blockhash == bytes([0x44]) * 32
    assert hashlib.sha256(tx.message).hexdigest() == t["message_sha256"]
    assert [ix.data[0] for ix in tx.instructions[:3]] == [2, 3, 12]
    req = requirement(payTo=t["pay_to"], extra={"feePayer": t["fee_payer"]})
    got = verify(base64.b64decode(t["base64"]), req)
    assert got == Verified(
        network=NETWORK,
        payer=t["payer"],
        amount="1000000",
        replay_key=f"{NETWORK}/{t['message_sha256']}",
    )


GOOD = Build()
LOOKUP = AddressLookupTableAccount(
    Pubkey.from_bytes(bytes([9]) * 32),
    [get_associated_token_address(SELLER.pubkey(), MINT), Pubkey.from_bytes(bytes([8]) * 32)],
)


@pytest.mark.parametrize(
    ("build", "reason", "message"),
    [
        pytest.param(GOOD, None, None, id="good"),
        pytest.param(replace(GOOD, extra=()), None, None, id="no-memo"),
        pytest.param(replace(GOOD, program=TOKEN_2022), None, None, id="token-2022"),
        pytest.param(
            replace(GOOD, extra=(Instruction(LIGHTHOUSE, b"x", []),) * 2 + GOOD.extra),
            None,
            None,
            id="lighthouse-twice-and-memo",
        ),
        pytest.param(replace(GOOD, price=5_000_000), None, None, id="price-at-cap"),
        pytest.param(replace(GOOD, mint=OTHER_MINT), reasons.SVM_MINT_MISMATCH, None, id="mint"),
        pytest.param(
            replace(GOOD, destination=get_associated_token_address(PAYER.pubkey(), MINT)),
            reasons.SVM_RECIPIENT_MISMATCH,
            None,
            id="destination",
        ),
        pytest.param(
            replace(
                GOOD, destination=get_associated_token_address(SELLER.pubkey(), MINT, TOKEN_2022)
            ),
            reasons.SVM_RECIPIENT_MISMATCH,
            None,
            id="destination-of-the-other-program",
        ),
        pytest.param(replace(GOOD, amount=999999), reasons.SVM_AMOUNT_MISMATCH, None, id="less"),
        pytest.param(replace(GOOD, amount=1000001), reasons.SVM_AMOUNT_MISMATCH, None, id="more"),
        pytest.param(replace(GOOD, decimals=9), reasons.SVM_AMOUNT_MISMATCH, None, id="decimals"),
        pytest.param(
            replace(GOOD, signature="missing"),
            reasons.SVM_INVALID_PAYLOAD,
            "the transfer authority has not signed",
            id="payer-signature-missing",
        ),
        pytest.param(
            replace(GOOD, authority_signs=False),
            reasons.SVM_INVALID_PAYLOAD,
            "the transfer authority has not signed",
            id="authority-not-a-signer",
        ),
        pytest.param(
            replace(GOOD, signature="wrong-message"),
            reasons.SVM_INVALID_PAYLOAD,
            "the authority's signature does not verify",
            id="bad-signature",
        ),
        pytest.param(
            replace(GOOD, fee_payer=PAYER),
            reasons.SVM_FEE_PAYER_NOT_MANAGED,
            None,
            id="fee-payer-is-not-the-facilitator",
        ),
        pytest.param(
            replace(GOOD, authority=FACILITATOR),
            reasons.SVM_FEE_PAYER_TRANSFERRING,
            None,
            id="fee-payer-is-the-authority",
        ),
        pytest.param(
            replace(
                GOOD,
                extra=(
                    Instruction(
                        LIGHTHOUSE, b"x", [AccountMeta(FACILITATOR.pubkey(), False, False)]
                    ),
                ),
            ),
            reasons.SVM_FEE_PAYER_TRANSFERRING,
            None,
            id="fee-payer-in-an-instruction",
        ),
        pytest.param(
            replace(GOOD, lookups=(LOOKUP,)),
            reasons.SVM_INVALID_PAYLOAD,
            "address table lookups",
            id="address-table-lookup",
        ),
        pytest.param(
            replace(GOOD, extra=(Instruction(SYSTEM, b"x", []),)),
            reasons.SVM_UNKNOWN_INSTRUCTION[0],
            None,
            id="extra-instruction-4th",
        ),
        pytest.param(
            replace(GOOD, extra=(*GOOD.extra, Instruction(SYSTEM, b"x", []))),
            reasons.SVM_UNKNOWN_INSTRUCTION[1],
            None,
            id="extra-instruction-5th",
        ),
        pytest.param(
            replace(GOOD, extra=GOOD.extra * 4),
            reasons.SVM_INSTRUCTIONS_LENGTH,
            None,
            id="seven-instructions",
        ),
        pytest.param(
            replace(GOOD, head=(limit_ix(),), extra=()),
            reasons.SVM_INSTRUCTIONS_LENGTH,
            None,
            id="two-instructions",
        ),
        pytest.param(
            replace(GOOD, head=(price_ix(), limit_ix())),
            reasons.SVM_COMPUTE_LIMIT,
            None,
            id="budget-swapped",
        ),
        pytest.param(
            replace(GOOD, head=(limit_ix(), limit_ix())),
            reasons.SVM_COMPUTE_PRICE,
            None,
            id="two-limits",
        ),
        pytest.param(
            replace(GOOD, price=5_000_001),
            reasons.SVM_COMPUTE_PRICE_TOO_HIGH,
            None,
            id="price-above-cap",
        ),
        pytest.param(
            replace(GOOD, program=SYSTEM),
            reasons.SVM_NO_TRANSFER_INSTRUCTION,
            None,
            id="transfer-of-another-program",
        ),
    ],
)
def test_each_mutation_has_its_reason(
    build: Build, reason: str | None, message: str | None
) -> None:
    got = verify(build.bytes())
    if reason is None:
        assert isinstance(got, Verified), got
        assert got.payer == str(build.authority.pubkey()) and got.amount == "1000000"
    else:
        assert isinstance(got, Refused) and got.reason == reason, got
        assert message is None or got.message == message


@pytest.mark.parametrize(
    ("req", "network", "reason"),
    [
        pytest.param(requirement(scheme="upto"), NETWORK, reasons.UNSUPPORTED_SCHEME, id="scheme"),
        pytest.param(
            requirement(), networks.SOLANA_MAINNET.caip2, reasons.NETWORK_MISMATCH, id="network"
        ),
        pytest.param(
            requirement(network="solana:x"),
            "solana:x",
            reasons.INVALID_NETWORK,
            id="unknown-network",
        ),
        pytest.param(
            requirement(extra={}), NETWORK, reasons.SVM_FEE_PAYER_MISSING, id="no-fee-payer"
        ),
        pytest.param(
            requirement(extra={"feePayer": "0x12"}),
            NETWORK,
            reasons.SVM_FEE_PAYER_MISSING,
            id="fee-payer-not-base58",
        ),
        pytest.param(
            requirement(payTo="nope"),
            NETWORK,
            reasons.INVALID_PAYMENT_REQUIREMENTS,
            id="pay-to-not-an-address",
        ),
        pytest.param(
            requirement(extra={"feePayer": str(FACILITATOR.pubkey()), "memo": "order-1"}),
            NETWORK,
            reasons.SVM_MEMO_MISMATCH,
            id="memo-differs",
        ),
    ],
)
def test_requirement_checks(req: dict[str, Any], network: str, reason: str) -> None:
    got = solana.verify_solana(payment(GOOD.bytes(), network), req)
    assert isinstance(got, Refused) and got.reason == reason


def test_extra_memo_must_be_the_one_memo() -> None:
    req = requirement(extra={"feePayer": str(FACILITATOR.pubkey()), "memo": "order-1"})
    one = Instruction(MEMO, b"order-1", [])
    assert isinstance(verify(replace(GOOD, extra=(one,)).bytes(), req), Verified)
    got = verify(replace(GOOD, extra=(one, one)).bytes(), req)
    assert isinstance(got, Refused) and got.reason == reasons.SVM_MEMO_COUNT


def test_a_legacy_transaction_is_refused() -> None:
    ixs = [limit_ix(), price_ix(), GOOD.transfer()]
    message = Message.new_with_blockhash(ixs, FACILITATOR.pubkey(), BLOCKHASH)
    tx = Transaction.populate(
        message, [Signature.default()] * message.header.num_required_signatures
    )
    got = solana.decode_transaction(bytes(tx))
    assert got == Refused(reason=reasons.SVM_INVALID_PAYLOAD, message="not a v0 transaction")


def test_not_a_solana_payload() -> None:
    p = replace(payment(GOOD.bytes()), payload=None)
    got = solana.verify_solana(p, requirement())
    assert isinstance(got, Refused) and got.reason == reasons.INVALID_PAYLOAD


def _undecodable(raw: bytes) -> bool:
    got = solana.decode_transaction(raw)
    return isinstance(got, Refused) and got.reason == reasons.SVM_TRANSACTION_DECODE_FAILED


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + b"\0", id="byte-over"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\x80\x00" + b[1:], id="non-canonical-compact-u16"),
        pytest.param(lambda b: b"\xff\xff\x03" + b[1:], id="65535-signatures"),
        pytest.param(lambda b: b"\xff\xff\xff" + b[1:], id="compact-u16-too-long"),
        pytest.param(lambda b: b"\x01" + b[65:], id="fewer-signatures-than-required"),
        pytest.param(lambda b: b + bytes(1300), id="above-1232-bytes"),
    ],
)
def test_undecodable(mutate: Any) -> None:
    assert _undecodable(mutate(GOOD.bytes()))


def test_out_of_range_account_index() -> None:
    raw = bytearray(GOOD.bytes())
    tx = solana.decode_transaction(bytes(raw))
    assert isinstance(tx, solana.SolanaTransaction)
    # The memo's program index is the byte right after the transfer's data.
    at = bytes(raw).rindex(tx.instructions[3].data) - 3
    assert raw[at] == tx.instructions[3].program_index
    raw[at] = 200
    assert _undecodable(bytes(raw))


def test_transfer_amount_for_v1() -> None:
    assert solana.transfer_amount(replace(GOOD, amount=42).bytes()) == 42
    assert solana.transfer_amount(b"junk") is None
    assert solana.transfer_amount(replace(GOOD, head=(limit_ix(),), extra=()).bytes()) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1400))
def test_arbitrary_bytes_decode_or_refuse(raw: bytes) -> None:
    got = solana.decode_transaction(raw)
    assert isinstance(got, solana.SolanaTransaction | Refused)
    assert isinstance(verify(raw), Verified | Refused)


GOOD_BYTES = GOOD.bytes()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD_BYTES) - 1), st.integers(0, 255)), max_size=4))
def test_corrupted_transactions_never_raise(edits: list[tuple[int, int]]) -> None:
    raw = bytearray(GOOD_BYTES)
    for at, value in edits:
        raw[at] = value
    got = verify(bytes(raw))
    assert isinstance(got, Verified | Refused)
    if isinstance(got, Verified):
        # Everything but the fee payer's signature slot (bytes 1-64) is signed or checked.
        changed = [i for i, (a, b) in enumerate(zip(raw, GOOD_BYTES, strict=True)) if a != b]
        assert all(1 <= i <= 64 for i in changed)
