"""The networks aroutd takes USDC payments on (SPEC §10), and USD -> atomic units.

Constants only, from SPEC §10 and x402-siwx.md §2.1 / §3.4:

- Base ``eip155:8453``: USDC ``0x8335…2913``, EIP-712 domain name **"USD Coin"**, "2";
  Base Sepolia ``eip155:84532``: USDC ``0x036C…CF7e``, domain name **"USDC"**, "2".
  The two names differ, and clients sign over them, so each is taken from here.
- Solana mainnet ``solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp``, mint ``EPjF…Dt1v``;
  devnet ``solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1``, mint ``4zMM…ncDU``.
- USDC has 6 decimals everywhere. :func:`usd_to_atomic` is exact: a float from the
  config goes through its shortest repr (``5.1`` -> ``"5.1"``) into a Decimal, and an
  amount finer than one micro-dollar is an error, never rounded.
- v1 network names (``base``, ``base-sepolia``, ``solana``, ``solana-devnet``) map to
  their CAIP-2 ids (x402-siwx.md §1.4), for ``X-PAYMENT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "BASE",
    "BASE_SEPOLIA",
    "NETWORKS",
    "SOLANA_DEVNET",
    "SOLANA_MAINNET",
    "USDC_DECIMALS",
    "V1_NETWORK_NAMES",
    "EvmNetwork",
    "SolanaNetwork",
    "network",
    "usd_to_atomic",
]

USDC_DECIMALS = 6
_ATOMIC_PER_USD = Decimal(10) ** USDC_DECIMALS
_UINT256_LIMIT = Decimal(2) ** 256  # EIP-3009 value is a uint256; SPL amounts are u64


@dataclass(frozen=True, slots=True, kw_only=True)
class EvmNetwork:
    caip2: str
    chain_id: int
    usdc: str  # the token contract, EIP-55; also the EIP-712 verifyingContract
    eip712_name: str
    eip712_version: str
    v1_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SolanaNetwork:
    caip2: str
    usdc_mint: str  # base58
    v1_name: str


BASE = EvmNetwork(
    caip2="eip155:8453",
    chain_id=8453,
    usdc="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    eip712_name="USD Coin",
    eip712_version="2",
    v1_name="base",
)
BASE_SEPOLIA = EvmNetwork(
    caip2="eip155:84532",
    chain_id=84532,
    usdc="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    eip712_name="USDC",
    eip712_version="2",
    v1_name="base-sepolia",
)
SOLANA_MAINNET = SolanaNetwork(
    caip2="solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    usdc_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    v1_name="solana",
)
SOLANA_DEVNET = SolanaNetwork(
    caip2="solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    usdc_mint="4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
    v1_name="solana-devnet",
)

NETWORKS: Mapping[str, EvmNetwork | SolanaNetwork] = {
    n.caip2: n for n in (BASE, BASE_SEPOLIA, SOLANA_MAINNET, SOLANA_DEVNET)
}
V1_NETWORK_NAMES: Mapping[str, str] = {n.v1_name: n.caip2 for n in NETWORKS.values()}


def network(caip2: str) -> EvmNetwork | SolanaNetwork | None:
    """The known network with this CAIP-2 id, or None."""
    return NETWORKS.get(caip2)


def usd_to_atomic(usd: float | int | str | Decimal) -> str:
    """USD as USDC atomic units, a decimal string (``5.0`` -> ``"5000000"``).

    ValueError for a negative, zero, non-finite or sub-micro-dollar amount: the
    config must say an amount a client can pay exactly.
    """
    if isinstance(usd, bool):
        raise ValueError("USD amount must be a number")
    try:
        # repr(float) is the shortest string that reads back as the same float.
        value = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
        atomic = value * _ATOMIC_PER_USD
        exact = atomic.is_finite() and atomic == atomic.to_integral_value()
    except (InvalidOperation, ValueError):
        raise ValueError("USD amount must be a decimal number") from None
    if not exact:
        raise ValueError(f"USD amount must be a whole number of 10^-{USDC_DECIMALS}")
    if not 0 < atomic < _UINT256_LIMIT:
        raise ValueError("USD amount must be positive and below 2^256 atomic units")
    return str(int(atomic))
