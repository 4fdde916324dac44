"""aroutd: the authenticating edge for LLM API traffic (trio + h11).

Pure core (no I/O, no trio; values in, values out):
    errors        the one exception tree (status, type, public message)
    config        SPEC §2 config parsed into frozen values; tomlpos: line numbers for errors
    config_values the SPEC §2 config dataclasses with their defaults
    expand        ${VAR} and ${file:PATH} in config strings; paths against the config folder
    tomlscan      one scan of a TOML text for the line of every key and table header
    keytable      SPEC §3 key table indexed by SHA-256; keys: key making, hashing, `check`
    keytable_fast the key table's fast path: [[keys]] tables read without tomllib
    principal     who a request is from, with its scopes
    credentials   SPEC §4 credential sources and kinds
    routing       routes, the request's model, provider and upstream
    policy        SPEC §5 endpoint and model rules; principals from keys and wallets
    forwarding    SPEC §6 upstream request head and relayed response head
    framing       SPEC §12 request-smuggling checks
    proxyproto    the PROXY protocol v1/v2 header (load balancers), parsed
    authlimit     SPEC §12 slowing down failed authentication
    accesslog     SPEC §11 JSON access-log lines and daemon events
    metrics       SPEC §11 Prometheus counters and histograms, rendered as text
    auth/         SPEC §8 SIWx, EVM, Solana, wallet JWTs, sign-in
    store/        the state store interface and its sqlite default
    mock_router, mock_providers, mock_gemini   the mock upstream's pure answers

Trio shell (sockets, files, clock, signals):
    connection    one h11 server connection on a trio stream
    server        the per-connection loop
    handler       one request from head to last byte
    upstream      pooled h11 client connections to upstreams
    websocket     WebSocket upgrades: the handshake forwarded, then bytes relayed both ways
    runtime       live state shared by connections
    daemon        listeners, nurseries, SIGHUP/SIGTERM, sd_notify (sdnotify)
    admin         the admin listener: GET /healthz and GET /metrics
    mock_upstream the bundled fake OpenAI/Anthropic/Gemini on hypercorn
    demo, cli     the quick start and the command line
"""

__version__ = "0.1.0"
