"""The pure core never imports trio, sockets or the shell (STYLE.md: a pure core, a thin shell)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "aroutd.errors",
    "aroutd.config",
    "aroutd.config_values",
    "aroutd.expand",
    "aroutd.tomlscan",
    "aroutd.keytable",
    "aroutd.keytable_fast",
    "aroutd.keys",
    "aroutd.tomlpos",
    "aroutd.principal",
    "aroutd.credentials",
    "aroutd.routing",
    "aroutd.policy",
    "aroutd.forwarding",
    "aroutd.framing",
    "aroutd.proxyproto",
    "aroutd.authlimit",
    "aroutd.accesslog",
    "aroutd.auth.siwx",
    "aroutd.auth.evm",
    "aroutd.auth.solana",
    "aroutd.auth.walletjwt",
    "aroutd.mock_router",
    "aroutd.mock_providers",
    "aroutd.mock_gemini",
]
SHELL = ("trio", "h11", "hypercorn", "aroutd.daemon", "aroutd.server", "aroutd.upstream")


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io_layer(module: str) -> None:
    code = (
        f"import sys, {module}; "
        f"bad = [m for m in {SHELL!r} if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"
