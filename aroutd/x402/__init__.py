"""x402 v2 payments, scheme "exact" (SPEC §10): the pure core, no I/O.

Values in, values out: no clock (``now`` is passed in as Unix seconds), no sockets,
no store. The trio shell (facilitator client, handler, seen-payments store) calls in.

    networks      per-network constants: USDC assets, EIP-712 domains, CAIP-2 ids,
                  v1 names; USD -> atomic units
    reasons       the reason codes (x402-siwx.md §1.7) and the two verdicts,
                  Verified / Refused
    requirements  the PaymentRequired object and the base64 JSON header codec,
                  matching ``accepted``, the PAYMENT-RESPONSE object
    payload       PAYMENT-SIGNATURE (v2) and X-PAYMENT (v1) decoded into typed values
                  (400 when malformed); which advertised requirement a payment is for
    evm           the EIP-3009 TransferWithAuthorization digest and local verification
    solana        the v0 transaction decoded by hand and verified locally

Dependencies point one way: reasons, networks <- requirements <- solana <- payload
<- evm. solana names the payload type for the type checker only, so that payload can
ask it for a v1 transfer's amount.
"""
