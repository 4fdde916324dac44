"""Authentication methods, one module each (SPEC §4, §8).

- ``siwx``: Sign-In-With-X messages (CAIP-122 / EIP-4361 layout) and the header
- ``evm``: keccak256, EIP-191 personal_sign, EIP-55, secp256k1 recovery
- ``solana``: base58, ed25519
- ``signin``: ``POST /v1/x402/auth``: verify a sign-in, consume its nonce, issue a JWT
- ``walletjwt``: wallet JWTs (HS256 with kid and rotation), their secret file, a cache

All of it is pure or plain blocking code: nothing here imports trio.
"""
