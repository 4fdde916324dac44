"""aroutd: the authenticating edge for LLM API traffic (trio + h11).

The folders say which code may do I/O (tests/test_architecture.py checks it):
the pure core at the package root and in its capability subpackages takes
values (file contents, ``now``) and returns values or raises our errors;
``shell/`` holds every socket, file, clock, signal and thread; ``mock/`` holds the
bundled fakes (upstream, x402 facilitator), which the shell never imports.

Pure core, at the root:
    errors        the one exception tree (status, type, public message)
    headers       header lists: lookups, comma lists, hop-by-hop and the shared constants
    target        SPEC §6 the request target normalized once (RFC 3986 §6.2.2), or 400
    admission     SPEC §4-§6 admit_head (405/400/404) and plan_forward (model, scope, target)
    principal     who a request is from, with its scopes
    credentials   SPEC §4 credential sources and kinds
    routing       routes, the request's model (JSON, multipart, Gemini path), provider
    policy        SPEC §5 endpoint and model rules; principals from keys and wallets
    forwarding    SPEC §6 upstream request head and relayed response head
    framing       SPEC §12 request-smuggling checks
    proxyproto    the PROXY protocol v1/v2 header (load balancers), parsed
    authlimit     SPEC §12 slowing down failed authentication
    accesslog     SPEC §11 JSON access-log lines and daemon event lines, formatted
    metrics       SPEC §11 Prometheus counters and histograms, rendered as text
Pure core, by capability:
    config/       SPEC §2: parse (text -> Config), values (the dataclasses), expand
                  (${VAR}, ${file:PATH} through the caller's reader), tomlpos, tomlscan
    keytable/     SPEC §3: table (text -> KeyTable), fast (its fast path), keys (making keys),
                  stored (the state store's keys, held in memory)
    manage/       SPEC §7 the management API: requests (bodies, queries), narrowing
                  (a key never exceeds its tenant), changes (the key made), views (JSON)
    auth/         SPEC §8: siwx, evm, solana, walletjwt, signin
    store/        the state-store interface (base); its backends: sqlite, redis (redis_scripts,
                  redis_rows, redis_import: another store's state written in), redis_limiter
                  (SPEC §9 rate limits shared), redis_authfail (SPEC §12 failed-auth counts shared)
    ratelimit/    SPEC §9 rate limits: ticks, values, gcra (rpm), daily (rpd), tokens (tpm),
                  nearest (X-RateLimit-*), backend (LimiterBackend), limiter (in memory)
    x402/         SPEC §10: networks (USDC, EIP-712 domains), reasons (codes, verdicts),
                  requirements (PaymentRequired, header codec), payload (PAYMENT-SIGNATURE,
                  X-PAYMENT), evm (EIP-3009), solana (v0 transactions), check (a payment
                  checked locally), facilitator (its requests and answers), siwx_extension
    usage/        SPEC §9: parse (usage read from answers as they stream), reports (each
                  provider's usage object, read), include_usage (asking an OpenAI stream for
                  usage, and removing it again), chunk_scan (when a held event cannot be
                  that chunk), sse_skip (the whole events both skip unread), cost,
                  periods (UTC day, week, month), book (spend in memory), limits (403),
                  ledger (wallet balances and their transactions log, 402)

Trio shell (shell/):
    files         reading the config, the key table and the JWT secrets (created if missing)
    logsink       log lines to stderr; a broken log never fails a request
    connection    one h11 server connection on a trio stream (limits, HEAD without a body)
    server        the per-connection loop, and its outer fault barrier
    handler       one request: the admission steps in order, the per-request fault barrier
    management    the management API and GET /v1/key, served (reads from memory, writes
                  through the store)
    keysync       other instances' and the command line's key changes, followed
    stores        the state store the config names (sqlite or redis), opened
    keyadmin      `aroutd keys list|disable|enable|delete` on the state store
    ledger        GET /api/v1/balance and /api/v1/transactions, served
    walletadmin   `aroutd wallets credit|show` on the state store
    migrate       `aroutd state migrate`: the sqlite state copied into a Redis
    payments      x402 on the request path: the 402 challenge, claim, settle, credit
    facilitator   the x402 facilitator client (h11), Solana fee payers refreshed
    ratelimits    rate limits on the request path: 429, X-RateLimit-*, tokens fed to tpm
    shared        on Redis: the shared rate limiter and failed-auth counts, wired in
    metering      usage metered on the relay path; a finished answer charged
    usagesync     the usage book committed to the store every 50 ms, others' usage read
    forward       an allowed plan's upstream request, metered, with our extra headers
    relay         an allowed request sent upstream, its answer relayed as it arrives
    upstream      the one upstream client: pooled h11 connections, clean-only reuse
    websocket     after a 101: bytes joined both ways
    runtime       live state shared by connections
    daemon        listeners, nurseries, SIGHUP/SIGTERM, sd_notify (sdnotify)
    admin         the admin listener: GET /healthz and GET /metrics

The mocks (mock/): the upstream's router, providers, gemini, responses (its pure
answers) and server (hypercorn); facilitator (a fake x402 facilitator, stdlib http.server);
x402_walkthrough (scripts/x402-demo: a throwaway wallet pays the mock, step by step).
Entry points: cli (the command line), demo (the quick start), __main__.
"""

__version__ = "0.1.0"
