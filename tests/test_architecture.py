"""The folders say the architecture (STYLE.md): a pure core, a thin trio shell, the mock apart.

- The core (every module but ``aroutd/shell/``, ``aroutd/mock/``, the state-store
  backends and the entry points) imports no trio, h11, socket, os, io, time,
  sqlite3, threading, signal or subprocess, never calls ``open()``, and never imports the
  shell or the mock: it takes values (file contents, ``now``) and returns values.
- The shell never imports the mock.
- Importing a core module at run time pulls in none of the I/O layers either
  (checked in a fresh interpreter, so a transitive import cannot hide).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aroutd"
ENTRY_POINTS = {"aroutd.cli", "aroutd.demo", "aroutd.__main__"}
BACKENDS = {"aroutd.store.sqlite", "aroutd.store.redis"}  # the state-store backends (I/O)
FORBIDDEN = {
    "trio", "h11", "hypercorn", "socket", "ssl", "os", "io", "time", "sqlite3",
    "threading", "signal", "subprocess", "selectors", "asyncio", "aroutd.shell", "aroutd.mock",
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
SHELL = sorted(m for m in MODULES if m.startswith("aroutd.shell"))
MOCK = sorted(m for m in MODULES if m.startswith("aroutd.mock"))
CORE = sorted(set(MODULES) - set(SHELL) - set(MOCK) - ENTRY_POINTS - BACKENDS)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _hits(names: set[str], banned: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def test_the_layers_are_all_populated() -> None:
    assert "aroutd.shell.handler" in SHELL and "aroutd.mock.server" in MOCK
    assert {"aroutd.routing", "aroutd.config.parse", "aroutd.auth.siwx"} <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_io(module: str) -> None:
    path = MODULES[module]
    assert _hits(_imports(path), FORBIDDEN) == [], f"{module} imports an I/O layer"
    calls = [
        n.lineno
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"
    ]
    assert calls == [], f"{module} calls open() at lines {calls}"


@pytest.mark.parametrize("module", SHELL)
def test_shell_never_imports_the_mock(module: str) -> None:
    assert _hits(_imports(MODULES[module]), {"aroutd.mock"}) == []


@pytest.mark.parametrize("module", CORE)
def test_core_module_pulls_in_no_io_layer_at_run_time(module: str) -> None:
    layers = ("trio", "h11", "hypercorn", "sqlite3", "aroutd.shell", "aroutd.mock")
    code = f"import sys, {module}; print(','.join(m for m in {layers!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom trio import sleep\nfrom aroutd.shell import files\n")
    assert _hits(_imports(bad), FORBIDDEN) == [
        "aroutd.shell", "aroutd.shell.files", "os.path", "trio", "trio.sleep",
    ]  # fmt: skip


def test_the_package_docstring_maps_every_module() -> None:
    import aroutd

    words = set(re.findall(r"[A-Za-z0-9_]+", aroutd.__doc__ or ""))
    missing = [m for m in MODULES if m != "aroutd" and m.rpartition(".")[2] not in words]
    assert missing == [], f"not in the map of aroutd/__init__.py: {missing}"
