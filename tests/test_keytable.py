"""aroutd.keytable.table: the key table (SPEC §3), its fast path and its error messages."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.errors import ConfigError
from aroutd.keytable import table as keytable
from aroutd.keytable.fast import NotSimple
from aroutd.keytable.table import KeyEntry, KeyTable, Tenant, parse_keytable
from aroutd.shell.files import load_keytable

FILE = Path("/etc/aroutd/keys.toml")
S1 = hashlib.sha256(b"lr_live_1").hexdigest()
S2 = hashlib.sha256(b"lr_live_2").hexdigest()
S3 = hashlib.sha256(b"lr_mgmt_3").hexdigest()
S4, S5 = hashlib.sha256(b"4").hexdigest(), hashlib.sha256(b"5").hexdigest()

SPEC_EXAMPLE = f"""\
[tenants.acme]
allowed_providers = ["openai", "anthropic"]   # omitted or empty = any
allowed_models = ["openai/gpt-4o*", "anthropic/*"]
limit = 1000.0                                # USD per period; omitted = unlimited
limit_reset = "monthly"                       # daily | weekly | monthly; omitted = lifetime

[[keys]]
id = "ci-bot"                                 # unique; shown in logs, metrics and the API
tenant = "acme"
type = "api"                                  # "api" (lr_live_) | "management" (lr_mgmt_)
sha256 = "{S1}"                               # SHA-256 of the whole key string
name = "CI bot"
allowed_providers = ["openai"]
allowed_models = ["openai/gpt-4o-mini"]
limit = 50.0
limit_reset = "daily"
expires_at = 2027-01-01T00:00:00Z
disabled = false

[[keys]]
id = "admin"
tenant = "acme"
type = "management"
sha256 = "{S3}"
"""

CI_BOT = KeyEntry(
    id="ci-bot",
    tenant="acme",
    type="api",
    digest=bytes.fromhex(S1),
    name="CI bot",
    allowed_providers=("openai",),
    allowed_models=("openai/gpt-4o-mini",),
    limit=50.0,
    limit_reset="daily",
    expires_at=datetime(2027, 1, 1, tzinfo=UTC),
    disabled=False,
)
ADMIN = KeyEntry(id="admin", tenant="acme", type="management", digest=bytes.fromhex(S3))
ACME = Tenant(
    id="acme",
    allowed_providers=("openai", "anthropic"),
    allowed_models=("openai/gpt-4o*", "anthropic/*"),
    limit=1000.0,
    limit_reset="monthly",
)


def parse(text: str) -> KeyTable:
    return parse_keytable(text, path=FILE)


def entries(table: KeyTable) -> dict[bytes, KeyEntry]:
    return {digest: table.by_digest[digest] for digest in table.by_digest}


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text)
    return list(exc.value.problems)


def test_spec_example() -> None:
    table = parse(SPEC_EXAMPLE)
    assert table.tenants == {"acme": ACME}
    assert entries(table) == {CI_BOT.digest: CI_BOT, ADMIN.digest: ADMIN}
    assert table.lookup(bytes.fromhex(S1)) == CI_BOT
    assert table.lookup(bytes.fromhex(S2)) is None
    assert len(table.by_digest) == 2
    assert bytes.fromhex(S3) in table.by_digest
    assert table.by_digest.get(bytes.fromhex(S2)) is None
    assert "digest" not in repr(CI_BOT)


def test_empty_tables() -> None:
    assert parse("").tenants == {}
    assert len(parse("").by_digest) == 0
    assert parse("[tenants.a]\n").tenants == {"a": Tenant(id="a")}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2027-01-01T00:00:00Z", datetime(2027, 1, 1, tzinfo=UTC), id="utc"),
        pytest.param("2027-01-01T02:30:00+02:00", datetime(2027, 1, 1, 0, 30, tzinfo=UTC), id="+2"),
        pytest.param("2027-01-01T00:00:00", datetime(2027, 1, 1, tzinfo=UTC), id="naive-is-utc"),
        pytest.param("2027-01-01 00:00:00.5z", datetime(2027, 1, 1, 0, 0, 0, 500000, UTC), id="sp"),
    ],
)
def test_expires_at(value: str, expected: datetime) -> None:
    text = f'[tenants.t]\n[[keys]]\nid = "k"\ntenant = "t"\nsha256 = "{S1}"\nexpires_at = {value}\n'
    entry = parse(text).lookup(bytes.fromhex(S1))
    assert entry is not None
    assert entry.expires_at == expected
    assert entry.expires_at is not None
    assert entry.expires_at.tzinfo == UTC


TENANT_T = "[tenants.t]\n"


def key(kid: str = "k", sha: str = S1, extra: str = "", tenant: str = "t") -> str:
    return f'\n[[keys]]\nid = "{kid}"\ntenant = "{tenant}"\nsha256 = "{sha}"\n{extra}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            TENANT_T + key("a") + key("a", S2),
            ["9: key 'a': duplicate id (also at line 4)"],
            id="duplicate-id",
        ),
        pytest.param(
            TENANT_T + key("a") + key("b"),
            ["11: key 'b': duplicate sha256 (same as key 'a' at line 6)"],
            id="duplicate-hash",
        ),
        pytest.param(
            TENANT_T + key("a", tenant="globex"),
            ["5: key 'a': unknown tenant 'globex'"],
            id="unknown-tenant",
        ),
        pytest.param(
            TENANT_T + key("a", S1.upper()),
            ["6: key 'a': sha256: must be 64 lowercase hex characters"],
            id="uppercase-hash",
        ),
        pytest.param(
            TENANT_T + key("a", "lr_live_" + "0" * 48),
            ["6: key 'a': sha256: must be 64 lowercase hex characters"],
            id="pasted-key-never-shown",
        ),
        pytest.param(
            TENANT_T + key("a", extra='type = "admin"\ncolour = "red"\n'),
            [
                '7: key \'a\': type: must be "api" or "management"',
                "8: key 'a': colour: unknown field",
            ],
            id="type-unknown-field",
        ),
        pytest.param(
            TENANT_T + '\n[[keys]]\ntenant = "t"\n',
            ["3: key #1: id: missing (required)", "3: key #1: sha256: missing (required)"],
            id="missing-required",
        ),
        pytest.param(
            TENANT_T + key("bad id!") + key("x" * 129, S2),
            [
                "4: key #1: id: must be letters, digits and . _ : @ - (at most 128)",
                "9: key #2: id: must be letters, digits and . _ : @ - (at most 128)",
            ],
            id="bad-ids",
        ),
        pytest.param(
            TENANT_T
            + "\n[[keys]]\nid = 1\ntenant = 2\nsha256 = 3\ntype = 4\nname = 5\n"
            + 'allowed_providers = "openai"\nallowed_models = [1]\nlimit = -5\n'
            + 'limit_reset = "hourly"\nexpires_at = "2027-01-01"\ndisabled = "no"\n',
            [
                "4: key #1: id: must be letters, digits and . _ : @ - (at most 128), "
                "not an integer",
                "5: key #1: tenant: must be a string, not an integer",
                "6: key #1: sha256: must be 64 lowercase hex characters, not an integer",
                '7: key #1: type: must be "api" or "management", not an integer',
                "8: key #1: name: must be a string, not 5",
                "9: key #1: allowed_providers: must be an array of strings, not a string",
                "10: key #1: allowed_models: must be an array of strings, not an array",
                "11: key #1: limit: must be a number >= 0 (USD), not -5",
                '12: key #1: limit_reset: must be "daily", "weekly" or "monthly", not a string',
                "13: key #1: expires_at: must be a TOML date-time such as "
                "2027-01-01T00:00:00Z, not a string",
                "14: key #1: disabled: must be true or false, not a string",
            ],
            id="bad-fields",
        ),
        pytest.param(
            TENANT_T + key("a", extra="expires_at = 2027-01-01\nlimit = inf\n"),
            [
                "7: key 'a': expires_at: must be a TOML date-time such as "
                "2027-01-01T00:00:00Z, not a date without a time",
                "8: key 'a': limit: must be a number >= 0 (USD), not inf",
            ],
            id="date-and-inf",
        ),
        pytest.param(
            '[tenants."bad id"]\nlimit = -1\nlimit_reset = "yearly"\ncolour = 1\n'
            '[tenants."wallet:x"]\nallowed_models = "x"\n',
            [
                "1: tenant 'bad id': ids use letters, digits and . _ : @ -",
                "2: tenant 'bad id': limit: must be a number >= 0, not -1",
                '3: tenant \'bad id\': limit_reset: must be "daily", "weekly" or "monthly"',
                "4: tenant 'bad id': colour: unknown field",
                "5: tenant 'wallet:x': ids use letters, digits and . _ : @ -",
                "6: tenant 'wallet:x': allowed_models: must be an array of strings, not a string",
            ],
            id="tenants",
        ),
        pytest.param(
            "foo = 1\ntenants = 2\nkeys = 3\n",
            [
                "1: foo: unknown field",
                "2: tenants: must be a table, not 2",
                "3: keys: must be an array of tables ([[keys]])",
            ],
            id="top-level",
        ),
        pytest.param(
            "[tenants]\nacme = 1\n",
            ["2: tenants.acme: must be a table ([tenants.NAME]), not an integer"],
            id="tenant-not-table",
        ),
        pytest.param(
            TENANT_T + key("a") + "\n[[keys]]\nid = 'a'\nid = 'b'\n",
            ["10: invalid TOML: Cannot overwrite a value (column 9)"],
            id="duplicate-field-toml-error",
        ),
        pytest.param(
            TENANT_T + key("a") + '\n[[keys]]\nid = "a"\nid = "b"\n',
            ["10: invalid TOML: Cannot overwrite a value (column 9)"],
            id="duplicate-plain-field-toml-error",
        ),
        pytest.param(
            TENANT_T + key("a", extra='name = "unterminated\n'),
            ["7: invalid TOML: Illegal character '\\n' (column 21)"],
            id="syntax-error-in-keys",
        ),
        pytest.param(
            'x = """\n[[keys]]\n',
            ["3: invalid TOML: Unterminated string (at end of document)"],
            id="header-inside-string",
        ),
        pytest.param(
            '[[keys]]\nid = "a"\ntenant = "t"\nsha256 = "' + S1 + '"\n[tenants.t]\n'
            '[[keys]]\nid = "a"\ntenant = "u"\nsha256 = "' + S2 + '"\n',
            [
                "7: key 'a': duplicate id (also at line 2)",
                "8: key 'a': unknown tenant 'u'",
            ],
            id="slow-path-lines",
        ),
    ],
)
def test_problems(text: str, expected: list[str]) -> None:
    found = problems(text)
    assert found == [f"{FILE}:{want}" for want in expected]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(SPEC_EXAMPLE, id="spec"),
        pytest.param(SPEC_EXAMPLE.replace("\n", "\r\n"), id="crlf"),
        pytest.param(
            SPEC_EXAMPLE.replace('id = "admin"', '"id" = "admin"'), id="quoted-key-slow-path"
        ),
        pytest.param(
            SPEC_EXAMPLE.replace(
                'allowed_models = ["openai/gpt-4o-mini"]',
                'allowed_models = [\n  "openai/gpt-4o-mini",  # the cheap one\n]',
            ),
            id="multiline-array-slow-path",
        ),
        pytest.param(
            SPEC_EXAMPLE.split("[[keys]]", 1)[1].join(["[[keys]]", ""])
            + "\n"
            + SPEC_EXAMPLE.split("[[keys]]", 1)[0],
            id="tenants-after-keys",
        ),
        pytest.param(
            SPEC_EXAMPLE.replace('name = "CI bot"', "name = 'CI bot' # literal string"),
            id="literal-string",
        ),
        pytest.param(SPEC_EXAMPLE.replace('name = "CI bot"', 'name = "CI \\u0062ot"'), id="escape"),
        pytest.param(
            SPEC_EXAMPLE.replace('[[keys]]\nid = "admin"', '[[keys]]\n# a comment\nid = "admin"'),
            id="comment-between-fields",
        ),
    ],
)
def test_layouts_give_the_same_table(text: str) -> None:
    table = parse(text)
    assert table.tenants == {"acme": ACME}
    assert entries(table) == {CI_BOT.digest: CI_BOT, ADMIN.digest: ADMIN}


def test_fast_path_is_taken_for_the_common_layout() -> None:
    text = SPEC_EXAMPLE.replace("\n", "\r\n").replace("\r\n", "\n")
    table = keytable._fast(text, str(FILE))  # raises _NotSimple when it is not
    assert entries(table) == {CI_BOT.digest: CI_BOT, ADMIN.digest: ADMIN}


def test_load_keytable(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(SPEC_EXAMPLE)
    assert len(load_keytable(path).by_digest) == 2
    with pytest.raises(ConfigError) as exc:
        load_keytable(tmp_path / "nope.toml")
    assert exc.value.problems == (
        f"{tmp_path / 'nope.toml'}: cannot read the key table: No such file or directory",
    )


def generated(n: int) -> str:
    head = '[tenants.acme]\nallowed_providers = ["openai"]\n\n'
    body = "".join(
        f'[[keys]]\nid = "key-{i:07d}"\ntenant = "acme"\n'
        f'sha256 = "{hashlib.sha256(str(i).encode()).hexdigest()}"\n\n'
        for i in range(n)
    )
    return head + body


def test_100k_keys_parse_quickly() -> None:
    text = generated(100_000)
    started = time.process_time()
    table = parse(text)
    seconds = time.process_time() - started
    print(f"100,000 keys: {seconds:.2f} s CPU")
    assert len(table.by_digest) == 100_000
    entry = table.lookup(hashlib.sha256(b"99999").digest())
    assert entry is not None
    assert entry.id == "key-0099999"
    assert entry.tenant == "acme"
    assert seconds < 30  # about 1 s on a laptop; generous for loaded CI machines


def test_100k_keys_with_one_error_name_its_line() -> None:
    text = generated(100_000).replace('id = "key-0054321"', 'id = "key-0000007"')
    assert problems(text) == [f"{FILE}:{4 + 5 * 54321 + 1}: key 'key-0000007': duplicate id "
                              f"(also at line {4 + 5 * 7 + 1})"]  # fmt: skip


# -- fuzzing -----------------------------------------------------------------------------

_NAMES = st.sampled_from(
    ["id", "tenant", "sha256", "type", "name", "limit", "limit_reset", "expires_at",
     "disabled", "allowed_models", "foo", '"id"', " id", "id.x"]
)  # fmt: skip
_VALUES = st.sampled_from(
    ['"a"', '"b"', '"t"', f'"{S1}"', f'"{S2}"', "'lit'", '"api"', '"management"', "5", "5.0",
     "-1", "true", "2027-01-01T00:00:00Z", "2027-01-01T00:00:00", "2027-01-01", '["openai"]',
     "[", '"""', '"a\\u0041"', '"x" # c', '"x" # \x01', '"\t"', "", '"\r"', '"daily"',
     "+5", "05", "1_000", "5.", ".5", "-0.0", "5 # c", "true # c", "2027-02-30T00:00:00Z",
     "2027-01-01T00:00:00.123456789+02:00", "2027-01-01t00:00:00z", "1e3", "inf", "tru"]
)  # fmt: skip
_LINES = st.one_of(
    st.sampled_from(
        ["[[keys]]", " [[ keys ]] # c", "[tenants.t]", "[tenants.u]", '[["keys"]]', "[keys]",
         "", "# comment", "   ", "\t# x", 'allowed_providers = ["openai"]', "keys = []", '"""']
    ),
    st.builds(lambda n, v: f"{n} = {v}", _NAMES, _VALUES),
    st.text(max_size=8),
)  # fmt: skip


_BASE_PAIRS = st.tuples(
    st.sampled_from(['id = "a"', 'id = "b"', "id = 'c'", 'id = ""', 'id = "d"', 'id = "\\u0061"']),
    st.sampled_from(['tenant = "t"', 'tenant = "u"', 'tenant = "zz"']),
    st.sampled_from([f'sha256 = "{h}"' for h in (S1, S2, S3, S4, S5)] + [f"sha256 = '{S3}' # c"]),
)
_EXTRA_PAIRS = st.one_of(
    st.sampled_from(
        [
            'type = "management"',
            'name = "n"',
            "limit = 2.5",
            "disabled = true",
            'id = "b"',
            "expires_at = 2027-01-01T00:00:00Z",
            "limit = 3 # c",
        ]
    ),
    st.builds(lambda n, v: f"{n} = {v}", _NAMES, _VALUES),
)
_KEY_TABLE = st.builds(
    lambda base, keep, extra, tail: (
        "[[keys]]\n"
        + "".join(f"{line}\n" for line, k in zip(base, keep, strict=True) if k)
        + "".join(f"{line}\n" for line in extra)
        + tail
    ),
    _BASE_PAIRS,
    st.tuples(*[st.sampled_from([True, True, True, False])] * 3),
    st.lists(_EXTRA_PAIRS, max_size=2),
    st.sampled_from(["", "\n", "# c\n", "\n  \n"]),
)
_DOCUMENTS = st.builds(
    lambda head, tables, junk: _insert(head + "".join(tables), junk),
    st.sampled_from(
        ["", "[tenants.t]\n", "[tenants.t]\n[tenants.u]\nlimit = 1\n", "[keys.x]\n", "keys = []\n"]
    ),
    st.lists(_KEY_TABLE, max_size=5),
    st.lists(st.tuples(st.integers(0, 99), _LINES), max_size=2),
)


def _insert(text: str, junk: list[tuple[int, str]]) -> str:
    lines = text.split("\n")
    for at, line in junk:
        lines.insert(at % (len(lines) + 1), line)
    return "\n".join(lines)


def outcome(parse_fn: object, text: str) -> tuple[str, object]:
    try:
        table = parse_fn(text, str(FILE))  # type: ignore[operator]
    except ConfigError as exc:
        return "error", exc.problems
    return "ok", (table.tenants, entries(table))


@settings(max_examples=200, deadline=None)
@given(st.one_of(_DOCUMENTS, st.lists(_LINES, max_size=16).map("\n".join)), st.booleans())
def test_fast_path_agrees_with_tomllib(text: str, crlf: bool) -> None:
    text = text.replace("\n", "\r\n") if crlf else text
    outcome(lambda t, f: parse_keytable(t, path=Path(f)), text)  # ConfigError or a table
    normalized = text.replace("\r\n", "\n")
    try:
        fast = outcome(keytable._fast, normalized)
    except NotSimple:
        return
    assert fast == outcome(keytable._slow, normalized)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    kind, result = outcome(lambda t, f: parse_keytable(t, path=Path(f)), text)
    if kind == "error":
        assert isinstance(result, tuple)
        assert all(p.startswith(f"{FILE}:") for p in result)
