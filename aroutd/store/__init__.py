"""The state store: what must survive a restart (SPEC §7-§10, §14).

``base`` defines the interface the daemon uses; ``sqlite`` is the embedded default.
"""
