"""scripts/x402-demo (``python -m aroutd.mock.x402_walkthrough``) and ``aroutd mock-facilitator``
as subprocesses: the walk-through pays and ends 0, the fake facilitator serves and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .e2e import Proc

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_x402_walkthrough_pays_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aroutd.mock.x402_walkthrough"],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "1. POST /v1/chat/completions with no credential",
        "-> 402 payment required",
        "exact on eip155:84532: 1.00 USDC (1000000)",
        "amount 1.00 USDC (1000000)",
        "PAYMENT-SIGNATURE:",
        "-> 200; the model says:",
        "asked the facilitator: /verify, /settle",
        "PAYMENT-RESPONSE: success True",
        "GET /api/v1/balance -> 200:",
        "GET /api/v1/transactions -> 200: 2 lines",
        "-> 402 payment required; PAYMENT-REQUIRED.error: invalid_exact_evm_nonce_already_used",
        "ok: challenged, paid, served, credited, and the replay refused",
    ):
        assert line in out, out
    assert "Traceback" not in done.stderr


def test_the_x402_demo_script_runs_the_walkthrough() -> None:
    script = (ROOT / "scripts" / "x402-demo").read_text()
    assert os.access(ROOT / "scripts" / "x402-demo", os.X_OK)
    assert "scripts/setup test" in script and "aroutd.mock.x402_walkthrough" in script


def test_mock_facilitator_serves_until_sigterm() -> None:
    popen = subprocess.Popen(
        [sys.executable, "-m", "aroutd", "mock-facilitator", "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = Proc(popen)
    proc.start_reader("stdout")
    try:
        url = proc.wait_for("mock-facilitator listening on http://").split(" on ")[1].strip()
        with urllib.request.urlopen(f"{url}/supported", timeout=10) as r:
            kinds = json.loads(r.read())["kinds"]
        assert {k["network"] for k in kinds} == {"eip155:8453", "eip155:84532"}
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        if popen.poll() is None:
            popen.kill()
