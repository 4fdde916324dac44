"""The bundled fakes: an OpenAI / Anthropic / Gemini upstream (SPEC §1 `aroutd mock-upstream`)
and an x402 facilitator (`aroutd mock-facilitator`).

router, providers, gemini: the upstream's pure answers; server: hypercorn serving them.
facilitator: the fake x402 facilitator (stdlib http.server, in a thread or as the command);
x402_walkthrough: `scripts/x402-demo`, both fakes and aroutd paid by a throwaway wallet.
Nothing in aroutd.shell imports this package (the demo and the CLI start it).
"""
