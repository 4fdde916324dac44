"""The bundled fake OpenAI / Anthropic / Gemini upstream (SPEC §1 `aroutd mock-upstream`).

router, providers, gemini: its pure answers; server: hypercorn serving them.
Nothing in aroutd.shell imports this package (the demo and the CLI start it).
"""
