"""aroutd.keytable.keys: key making, `aroutd keys new|hash` output; `aroutd check` (SPEC §1)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from aroutd.keytable.keys import (
    key_digest,
    keys_hash_output,
    keys_new_output,
    new_key,
)
from aroutd.keytable.table import parse_keytable
from aroutd.shell.files import check_paths

from .support import reference_credentials

ROOT = Path(__file__).resolve().parent.parent
THROWAWAY = "lr_live_" + "0" * 48  # documented in config/keys.toml; never a real key
THROWAWAY_SHA256 = "3426f99889e4bb3e20e88bda3b78f3fae65b46a5d67c252b36dca551aacbcce4"


@pytest.mark.parametrize(
    ("key_type", "pattern"),
    [
        pytest.param("api", r"lr_live_[0-9a-f]{48}", id="api"),
        pytest.param("management", r"lr_mgmt_[0-9a-f]{48}", id="management"),
    ],
)
def test_new_key(key_type: str, pattern: str) -> None:
    keys = {new_key(key_type) for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(pattern, k) for k in keys)


def test_new_key_rejects_other_types() -> None:
    with pytest.raises(ValueError, match="api"):
        new_key("admin")


def test_key_digest_known_answer() -> None:
    assert key_digest(THROWAWAY).hex() == THROWAWAY_SHA256
    assert key_digest("abc") == hashlib.sha256(b"abc").digest()


@pytest.mark.parametrize(
    ("key_type", "key_id", "expected_id"),
    [
        pytest.param("api", None, None, id="api-default-id"),
        pytest.param("management", "ops-admin", "ops-admin", id="management-with-id"),
    ],
)
def test_keys_new_output_pastes_into_a_key_table(
    key_type: str, key_id: str | None, expected_id: str | None
) -> None:
    key, entry = keys_new_output(tenant="acme", key_type=key_type, key_id=key_id)
    assert key not in entry  # the plaintext key is printed once, never in the entry
    table = parse_keytable("[tenants.acme]\n\n" + entry, path=Path("keys.toml"))
    found = table.lookup(key_digest(key))
    assert found is not None
    assert found.id == (expected_id or f"acme-{key_digest(key).hex()[:8]}")
    assert found.tenant == "acme"
    assert found.type == key_type
    assert f'sha256 = "{key_digest(key).hex()}"' in entry
    assert entry.startswith("# ")


@pytest.mark.parametrize(
    ("tenant", "key_id", "message"),
    [
        pytest.param("acme corp", None, "tenant must be", id="tenant-space"),
        pytest.param("wallet:0xabc", None, "wallet:", id="tenant-wallet"),
        pytest.param("acme", 'x"y', "key id must be", id="id-quote"),
        pytest.param("acme", "", "key id must be", id="id-empty"),
    ],
)
def test_keys_new_output_refuses_bad_names(tenant: str, key_id: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        keys_new_output(tenant=tenant, key_type="api", key_id=key_id)


@pytest.mark.parametrize(
    "stdin",
    [
        pytest.param(THROWAWAY, id="bare"),
        pytest.param(THROWAWAY + "\n", id="newline"),
        pytest.param(THROWAWAY + "\r\n", id="crlf"),
        pytest.param(f"  {THROWAWAY} \t\n\n", id="blanks"),
    ],
)
def test_keys_hash_output(stdin: str) -> None:
    assert keys_hash_output(stdin) == THROWAWAY_SHA256


def test_keys_hash_output_empty() -> None:
    with pytest.raises(ValueError, match="no key"):
        keys_hash_output("\n")


# -- aroutd check --------------------------------------------------------------------------


def write(tmp: Path, config: str, keys: str | None) -> Path:
    (tmp / "aroutd.toml").write_text(config)
    if keys is not None:
        (tmp / "keys.toml").write_text(keys)
    return tmp / "aroutd.toml"


def test_check_reference_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in reference_credentials(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert check_paths(ROOT / "config" / "aroutd.toml") == []
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    problems = check_paths(ROOT / "config" / "aroutd.toml")
    assert problems and all("CREDENTIALS_DIRECTORY is not set" in p for p in problems)


def test_check_valid(tmp_path: Path) -> None:
    _, entry = keys_new_output(tenant="acme", key_type="api", key_id="k1")
    assert check_paths(write(tmp_path, "", "[tenants.acme]\n" + entry)) == []


def test_check_config_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nlisten = 1\ncolour = 2\n", "")
    assert check_paths(path) == [
        f"{path}:2: server.listen: must be an array of strings, not 1",
        f"{path}:3: server.colour: unknown key",
    ]


def test_check_keytable_problems(tmp_path: Path) -> None:
    keys = f'[[keys]]\nid = "k"\ntenant = "nobody"\nsha256 = "{THROWAWAY_SHA256}"\n'
    path = write(tmp_path, '[keys]\nfile = "keys.toml"\n', keys)
    assert check_paths(path) == [f"{tmp_path / 'keys.toml'}:3: key 'k': unknown tenant 'nobody'"]


def test_check_missing_files(tmp_path: Path) -> None:
    assert check_paths(tmp_path / "none.toml") == [
        f"{tmp_path / 'none.toml'}: cannot read the config file: No such file or directory"
    ]
    path = write(tmp_path, "", None)
    assert check_paths(path) == [
        f"{tmp_path / 'keys.toml'}: cannot read the key table: No such file or directory"
    ]


def test_check_names_the_config_and_the_key_table_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both relative to the working directory when below it, both absolute otherwise
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", "", "[tenants.acme]\n[[keys]]\nid = 1\n")
    path.write_text("bogus = 1\n")
    monkeypatch.chdir(tmp_path)
    problems = check_paths(Path("etc/aroutd.toml"))
    assert problems and all(p.startswith("etc/aroutd.toml:") for p in problems), problems
    path.write_text("")
    problems = check_paths(Path("etc/aroutd.toml"))
    assert problems and all(p.startswith("etc/keys.toml:") for p in problems), problems
    monkeypatch.chdir(tmp_path / "etc")
    problems = check_paths(tmp_path / "etc" / "aroutd.toml")
    assert problems and all(p.startswith("keys.toml:") for p in problems), problems


def test_check_finds_a_state_folder_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    path = write(tmp_path, '[state]\npath = "blocker/state/aroutd.db"\n', "")
    assert check_paths(path) == [
        f"{tmp_path / 'blocker' / 'state'}: the state folder cannot be written ([state] path;"
        " under systemd leave it unset to use $STATE_DIRECTORY)"
    ]
    path = write(tmp_path, "", "")  # state/ beside the config: creatable
    assert check_paths(path) == []


def test_keys_new_adds_the_tenant_section_the_table_lacks() -> None:
    existing = (
        '[tenants.other]\n\n[[keys]]\nid = "o"\ntenant = "other"\nsha256 = "' + "a" * 64 + '"\n'
    )
    key, entry = keys_new_output(tenant="acme", key_type="api", key_id="k", tenant_known=False)
    assert entry.startswith("[tenants.acme]\n")
    table = parse_keytable(existing + "\n" + entry, path=Path("keys.toml"))  # pasted at the end
    assert table.lookup(key_digest(key)) is not None and "acme" in table.tenants
    _, entry = keys_new_output(tenant="acme", key_type="api", key_id="k", tenant_known=True)
    assert "[tenants." not in entry
    _, entry = keys_new_output(tenant="acme", key_type="api", key_id="k")
    assert entry.startswith("# the key table needs a [tenants.acme] section")


def test_keys_new_looks_at_the_configs_key_table(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = write(tmp_path, "", "[tenants.acme]\n")
    run = [sys.executable, "-m", "aroutd", "keys", "new", "--config", str(cfg), "--tenant"]
    known = subprocess.run([*run, "acme"], capture_output=True, text=True, check=True).stdout
    fresh = subprocess.run([*run, "beta"], capture_output=True, text=True, check=True).stdout
    assert "[tenants." not in known
    assert "\n[tenants.beta]\n" in fresh
