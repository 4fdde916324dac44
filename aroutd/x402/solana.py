"""Exact on Solana: the v0 transaction decoded by hand and verified locally (SPEC §10).

Wire form (Solana's serialization, x402-siwx.md §3.1): ``compact-u16`` signature count,
64-byte signatures, then the message: ``0x80 | version`` (v0 only), header
``(required signatures, read-only signed, read-only unsigned)``, static account keys,
recent blockhash, compiled instructions (program index, account indexes, data) and
address table lookups. ``compact-u16`` is 1-3 bytes, 7 bits each, canonical only.
Anything that does not parse, or leaves bytes over, is
``…transaction_could_not_be_decoded``; a legacy message or any address table lookup
(whose accounts only RPC can resolve) is refused as ``invalid_exact_svm_payload``.

:func:`verify_solana` then checks (x402-siwx.md §3.2, §3.3), first failure wins:
scheme, network, ``extra.feePayer``; 3-6 instructions; ``SetComputeUnitLimit`` then
``SetComputeUnitPrice`` (at most 5 lamports per CU); ``TransferChecked`` of SPL Token
or Token-2022 with 4 accounts; the rest Lighthouse or Memo (``extra.memo``: exactly
one Memo with that text); account 0 is ``extra.feePayer``, which is neither the
authority nor in any instruction's accounts (a spec MUST the SDKs leave out); mint ==
``asset``; destination == the ATA of (``payTo``, mint, token program); amount ==
``amount`` exactly (spec and TS; Python 2.25 accepts more) with 6 decimals; the
authority signed, and its ed25519 signature over the message bytes holds. The fee
payer's slot stays empty: the facilitator signs it at settlement.

The ATA is ``find_program_address([owner, token program, mint], ATA program)``: sha256
of the seeds, a bump byte (255 down to 1), the program id and "ProgramDerivedAddress",
taking the first hash that is not an ed25519 point. "Not a point" is decided here the
way Solana does (curve25519-dalek decompression: is ``(y²-1)/(dy²+1)`` a square mod p),
not with libsodium's ``crypto_core_ed25519_is_valid_point``, which also refuses points
outside the prime-order subgroup and would call 7 in 8 curve points "off curve".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aroutd.auth.solana import b58decode, b58encode, parse_address, verify_signature
from aroutd.errors import HTTPError
from aroutd.x402 import reasons
from aroutd.x402.networks import USDC_DECIMALS, SolanaNetwork, network
from aroutd.x402.reasons import Refused, Verified
from aroutd.x402.requirements import SCHEME_EXACT

if TYPE_CHECKING:  # payload imports this module (v1 amounts); the type is for mypy only
    from aroutd.x402.payload import PaymentPayload

__all__ = [
    "ATA_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "LIGHTHOUSE_PROGRAM",
    "MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS",
    "MEMO_PROGRAM",
    "TOKEN_2022_PROGRAM",
    "TOKEN_PROGRAM",
    "CompiledInstruction",
    "SolanaTransaction",
    "associated_token_address",
    "decode_transaction",
    "find_program_address",
    "is_on_curve",
    "transfer_amount",
    "verify_solana",
]

COMPUTE_BUDGET_PROGRAM = b58decode("ComputeBudget111111111111111111111111111111")
TOKEN_PROGRAM = b58decode("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = b58decode("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ATA_PROGRAM = b58decode("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM = b58decode("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
LIGHTHOUSE_PROGRAM = b58decode("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95")
# x402-siwx.md §3.2: the price must be <= 5 000 000 micro-lamports (5 lamports) per CU.
MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS = 5_000_000
_MAX_TRANSACTION_BYTES = 1232  # the packet limit; a bigger transaction cannot be sent
_SET_LIMIT, _SET_PRICE, _TRANSFER_CHECKED = 2, 3, 12  # instruction discriminators
_P = 2**255 - 19  # the ed25519 field
_D = -121665 * pow(121666, _P - 2, _P) % _P
_PDA_MARKER = b"ProgramDerivedAddress"


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledInstruction:
    program_index: int
    accounts: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SolanaTransaction:
    """A decoded v0 transaction; ``message`` is the exact signed bytes (0x80 prefix on)."""

    signatures: tuple[bytes, ...]
    message: bytes
    required_signatures: int
    readonly_signed: int
    readonly_unsigned: int
    account_keys: tuple[bytes, ...]
    recent_blockhash: bytes
    instructions: tuple[CompiledInstruction, ...]
    lookup_count: int


class _Malformed(Exception):
    """Internal to the decoder: never leaves this module."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Malformed
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def compact_u16(self) -> int:
        """Solana's short_vec length: 7 bits a byte, at most 3 bytes, no aliases."""
        value = 0
        for i in range(3):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if (byte == 0 and i > 0) or (i == 2 and byte > 3):
                    raise _Malformed  # an over-long spelling, or above 0xffff
                return value
        raise _Malformed

    def many(self, size: int) -> tuple[bytes, ...]:
        return tuple(self.take(size) for _ in range(self.compact_u16()))


def _instruction(r: _Reader) -> CompiledInstruction:
    program = r.u8()
    accounts = tuple(r.take(r.compact_u16()))
    return CompiledInstruction(
        program_index=program, accounts=accounts, data=r.take(r.compact_u16())
    )


def _parse(raw: bytes) -> SolanaTransaction | Refused:
    r = _Reader(raw)
    signatures = r.many(64)
    start = r.pos
    prefix = r.u8()
    if prefix != 0x80:  # a legacy message (no prefix) or a version above 0
        return Refused(reason=reasons.SVM_INVALID_PAYLOAD, message="not a v0 transaction")
    header = r.take(3)
    keys = r.many(32)
    blockhash = r.take(32)
    instructions = tuple(_instruction(r) for _ in range(r.compact_u16()))
    lookups = r.compact_u16()
    for _ in range(lookups):
        r.take(32)
        r.take(r.compact_u16())
        r.take(r.compact_u16())
    if r.pos != len(raw):
        raise _Malformed  # bytes over
    return SolanaTransaction(
        signatures=signatures,
        message=raw[start:],
        required_signatures=header[0],
        readonly_signed=header[1],
        readonly_unsigned=header[2],
        account_keys=keys,
        recent_blockhash=blockhash,
        instructions=instructions,
        lookup_count=lookups,
    )


def _sane(tx: SolanaTransaction) -> bool:
    """Solana's message sanitize rules, for a message without lookups."""
    n = len(tx.account_keys)
    return (
        len(tx.signatures) == tx.required_signatures
        and 0 < tx.required_signatures <= n
        and tx.readonly_signed < tx.required_signatures  # the fee payer is writable
        and tx.readonly_unsigned <= n - tx.required_signatures
        and all(0 < ix.program_index < n for ix in tx.instructions)
        and all(a < n for ix in tx.instructions for a in ix.accounts)
    )


def decode_transaction(raw: bytes) -> SolanaTransaction | Refused:
    """The v0 transaction in ``raw``, or why it is refused; never raises."""
    undecodable = Refused(reason=reasons.SVM_TRANSACTION_DECODE_FAILED, message="not a transaction")
    if len(raw) > _MAX_TRANSACTION_BYTES:
        return undecodable
    try:
        tx = _parse(raw)
    except _Malformed:
        return undecodable
    if isinstance(tx, Refused):
        return tx
    if tx.lookup_count:
        return Refused(reason=reasons.SVM_INVALID_PAYLOAD, message="address table lookups")
    return tx if _sane(tx) else undecodable


def is_on_curve(point: bytes) -> bool:
    """Whether 32 bytes decompress to an ed25519 point, as curve25519-dalek decides."""
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P  # never 0: -1/d is not a square
    x2 = u * pow(v, _P - 2, _P) % _P
    return x2 == 0 or pow(x2, (_P - 1) // 2, _P) == 1


def find_program_address(seeds: Sequence[bytes], program_id: bytes) -> tuple[bytes, int]:
    """The PDA and its bump: the first of bumps 255..1 whose hash is off the curve."""
    for bump in range(255, 0, -1):
        digest = hashlib.sha256(b"".join(seeds) + bytes((bump,)) + program_id + _PDA_MARKER)
        address = digest.digest()
        if not is_on_curve(address):
            return address, bump
    raise ValueError("no program address for these seeds")  # probability ~2^-255


def associated_token_address(owner: bytes, mint: bytes, token_program: bytes) -> bytes:
    """The associated token account of ``owner`` for ``mint`` (x402-siwx.md §3.3)."""
    return find_program_address((owner, token_program, mint), ATA_PROGRAM)[0]


def transfer_amount(raw: bytes) -> int | None:
    """The amount of a transaction's third instruction if it is a TransferChecked (v1)."""
    tx = decode_transaction(raw)
    if isinstance(tx, Refused) or len(tx.instructions) < 3:
        return None
    data = tx.instructions[2].data
    return int.from_bytes(data[1:9], "little") if len(data) == 10 and data[0] == 12 else None


def _refuse(reason: str, message: str) -> Refused:
    return Refused(reason=reason, message=message)


def _compute_budget(tx: SolanaTransaction) -> Refused | None:
    """Instructions 1 and 2: SetComputeUnitLimit, then a capped SetComputeUnitPrice."""
    limit, price = tx.instructions[0], tx.instructions[1]
    keys = tx.account_keys
    if (
        keys[limit.program_index] != COMPUTE_BUDGET_PROGRAM
        or limit.accounts
        or (len(limit.data) != 5 or limit.data[0] != _SET_LIMIT)
    ):
        return _refuse(reasons.SVM_COMPUTE_LIMIT, "first instruction: not SetComputeUnitLimit")
    if (
        keys[price.program_index] != COMPUTE_BUDGET_PROGRAM
        or price.accounts
        or (len(price.data) != 9 or price.data[0] != _SET_PRICE)
    ):
        return _refuse(reasons.SVM_COMPUTE_PRICE, "second instruction: not SetComputeUnitPrice")
    if int.from_bytes(price.data[1:], "little") > MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS:
        return _refuse(reasons.SVM_COMPUTE_PRICE_TOO_HIGH, "compute unit price above the cap")
    return None


def _layout(tx: SolanaTransaction, memo: object) -> Refused | None:
    """x402-siwx.md §3.2: 3-6 instructions in order; optional ones Lighthouse or Memo."""
    if not 3 <= len(tx.instructions) <= 6:
        return _refuse(reasons.SVM_INSTRUCTIONS_LENGTH, "not 3 to 6 instructions")
    refused = _compute_budget(tx)
    if refused is not None:
        return refused
    transfer = tx.instructions[2]
    if tx.account_keys[transfer.program_index] not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or (
        len(transfer.data) != 10
        or transfer.data[0] != _TRANSFER_CHECKED
        or len(transfer.accounts) != 4
    ):
        return _refuse(
            reasons.SVM_NO_TRANSFER_INSTRUCTION, "third instruction: not TransferChecked"
        )
    memos = []
    for i, ix in enumerate(tx.instructions[3:]):
        program = tx.account_keys[ix.program_index]
        if program not in (LIGHTHOUSE_PROGRAM, MEMO_PROGRAM):
            return _refuse(reasons.SVM_UNKNOWN_INSTRUCTION[i], "an instruction of another program")
        if program == MEMO_PROGRAM:
            memos.append(ix.data)
    if isinstance(memo, str) and memo:
        if len(memos) != 1:
            return _refuse(reasons.SVM_MEMO_COUNT, "extra.memo needs exactly one Memo")
        if memos[0] != memo.encode():
            return _refuse(reasons.SVM_MEMO_MISMATCH, "the Memo is not extra.memo")
    return None


def _fee_payer(tx: SolanaTransaction, fee_payer: bytes, authority: bytes) -> Refused | None:
    """Account 0 is the facilitator's fee payer, which pays fees and nothing else (§3.3)."""
    if tx.account_keys[0] != fee_payer:
        return _refuse(reasons.SVM_FEE_PAYER_NOT_MANAGED, "account 0 is not extra.feePayer")
    used = {tx.account_keys[a] for ix in tx.instructions for a in (ix.program_index, *ix.accounts)}
    if authority == fee_payer or fee_payer in used:
        return _refuse(reasons.SVM_FEE_PAYER_TRANSFERRING, "the fee payer is in an instruction")
    return None


def _terms(tx: SolanaTransaction, requirement: Mapping[str, Any]) -> Refused | None:
    """Mint, destination ATA, amount and decimals against the requirement."""
    transfer = tx.instructions[2]
    program = tx.account_keys[transfer.program_index]
    _source, mint, destination, _authority = (tx.account_keys[a] for a in transfer.accounts)
    if b58encode(mint) != requirement.get("asset"):
        return _refuse(reasons.SVM_MINT_MISMATCH, "mint is not the asset")
    owner = _key(requirement.get("payTo"))
    if owner is None:
        return _refuse(reasons.INVALID_PAYMENT_REQUIREMENTS, "payTo is not an address")
    if destination != associated_token_address(owner, mint, program):
        return _refuse(reasons.SVM_RECIPIENT_MISMATCH, "destination is not payTo's ATA")
    amount = int.from_bytes(transfer.data[1:9], "little")
    if str(amount) != requirement.get("amount") or transfer.data[9] != USDC_DECIMALS:
        return _refuse(reasons.SVM_AMOUNT_MISMATCH, "amount or decimals differ")
    return None


def _key(text: object) -> bytes | None:
    """The 32 bytes of a base58 address from a requirement, or None."""
    try:
        return parse_address(text) if isinstance(text, str) else None
    except HTTPError:
        return None


def _signed(tx: SolanaTransaction, authority: bytes) -> Refused | None:
    """The authority is a signer and its ed25519 signature over the message holds."""
    signers = tx.account_keys[: tx.required_signatures]
    signature = tx.signatures[signers.index(authority)] if authority in signers else bytes(64)
    if not any(signature):  # not a signer, or its slot left empty
        return _refuse(reasons.SVM_INVALID_PAYLOAD, "the transfer authority has not signed")
    try:
        verify_signature(tx.message, signature, authority)
    except HTTPError:
        return _refuse(reasons.SVM_INVALID_PAYLOAD, "the authority's signature does not verify")
    return None


def _requirement(payment: PaymentPayload, requirement: Mapping[str, Any]) -> bytes | Refused:
    """Scheme, network and the fee payer named by the requirement (its extra.feePayer)."""
    if payment.scheme != SCHEME_EXACT or requirement.get("scheme") != SCHEME_EXACT:
        return _refuse(reasons.UNSUPPORTED_SCHEME, "scheme is not exact")
    if payment.network != requirement.get("network"):
        return _refuse(reasons.NETWORK_MISMATCH, "network is not the requirement's")
    if not isinstance(network(payment.network), SolanaNetwork):
        return _refuse(reasons.INVALID_NETWORK, "not a Solana network")
    extra = requirement.get("extra")
    fee_payer = _key(extra.get("feePayer") if isinstance(extra, Mapping) else None)
    if fee_payer is None:
        return _refuse(reasons.SVM_FEE_PAYER_MISSING, "no extra.feePayer")
    return fee_payer


def verify_solana(payment: PaymentPayload, requirement: Mapping[str, Any]) -> Verified | Refused:
    """Local verification of an exact Solana payment against the matched requirement."""
    fee_payer = _requirement(payment, requirement)
    if isinstance(fee_payer, Refused):
        return fee_payer
    raw = getattr(payment.payload, "transaction", None)  # a SolanaPayload's bytes
    if not isinstance(raw, bytes):
        return _refuse(reasons.INVALID_PAYLOAD, "not a Solana payload")
    tx = decode_transaction(raw)
    if isinstance(tx, Refused):
        return tx
    extra = requirement.get("extra")
    refused = _layout(tx, extra.get("memo") if isinstance(extra, Mapping) else None)
    if refused is not None:
        return refused
    # TransferChecked accounts: [source, mint, destination, authority] (§3.2).
    authority = tx.account_keys[tx.instructions[2].accounts[3]]
    refused = _fee_payer(tx, fee_payer, authority) or _terms(tx, requirement)
    refused = refused or _signed(tx, authority)
    if refused is not None:
        return refused
    return Verified(
        network=payment.network,
        payer=b58encode(authority),
        amount=str(int.from_bytes(tx.instructions[2].data[1:9], "little")),
        replay_key=f"{payment.network}/{hashlib.sha256(tx.message).hexdigest()}",
    )
