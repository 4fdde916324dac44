"""aroutd.config.parse and aroutd.config.tomlpos: the config file (SPEC §2)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aroutd.config.parse import Config, Price, RouteConfig, parse_config
from aroutd.config.tomlpos import dotted, scan_positions
from aroutd.errors import ConfigError

from .support import reference_credentials

ROOT = Path(__file__).resolve().parent.parent
DIR = Path("/etc/aroutd")
FILE = DIR / "aroutd.toml"


def parse(text: str, environ: dict[str, str] | None = None, path: Path = FILE) -> Config:
    return parse_config(
        text, path=path, cwd=Path.cwd(), environ=environ or {}, read_file=Path.read_bytes
    )


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text, environ)
    return list(exc.value.problems)


UP = '[upstreams.o]\nurl = "http://up"\n'


def test_defaults() -> None:
    c = parse("")
    assert c.path == FILE
    assert c.server.listen == (("127.0.0.1", 8080),)
    assert c.server.admin_listen == ("127.0.0.1", 9901)
    assert c.server.public_url == "http://127.0.0.1:8080"
    assert c.server.max_body_bytes == 10485760
    assert c.server.header_timeout_s == 10.0
    assert c.server.allow_query_key is True
    assert c.server.tls_cert is None
    assert c.keys.file == DIR / "keys.toml"
    assert c.state.backend == "sqlite"
    assert c.state.path == DIR / "state/aroutd.db"
    assert c.wallet.jwt_secret_file == DIR / "state/jwt.secret"
    assert c.wallet.networks[0] == "eip155:8453"
    assert c.x402.enabled is False
    assert c.x402.topup_tiers_usd == (1.0, 5.0, 10.0, 20.0)
    assert c.upstreams == {}
    assert c.routes == ()
    assert c.pricing == {}


def test_reference_config_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aroutd.shell.files import load_config

    for name, value in reference_credentials(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    c = load_config(ROOT / "config" / "aroutd.toml")
    assert c.keys.file == ROOT / "config" / "keys.toml"
    assert c.state.path == ROOT / "config" / "state" / "aroutd.db"  # no $STATE_DIRECTORY
    assert set(c.upstreams) == {"openai", "anthropic", "google"}
    assert c.upstreams["openai"].auth_value == "Bearer sk-test-openai"
    assert c.upstreams["anthropic"].host == "api.anthropic.com"
    assert c.upstreams["google"].auth_header == "x-goog-api-key"
    assert [(r.pattern, r.prefix, r.upstream) for r in c.routes] == [
        ("/v1*/models/*:*", None, "google"),
        ("/v1/messages*", None, "anthropic"),
        (None, "/v1/", "openai"),
        (None, "/openai/", "openai"),
    ]
    assert c.routes[3].strip_prefix == "/openai"
    assert c.pricing["openai/gpt-4o"] == Price(input=2.5, output=10.0, cached_input=1.25)


def test_reference_config_documents_every_key() -> None:
    text = (ROOT / "config" / "aroutd.toml").read_text()
    for key in (
        "listen", "admin_listen", "public_url", "trusted_proxies", "proxy_protocol", "tls_cert",
        "tls_key", "reuse_port", "max_connections", "max_header_bytes", "max_body_bytes",
        "header_timeout_s", "body_timeout_s", "idle_timeout_s", "drain_timeout_s",
        "allow_query_key", "backend", "redis_url", "jwt_secret_file", "jwt_previous_secret_files",
        "jwt_ttl_s", "siwx_max_age_s", "allowed_providers", "allowed_models", "facilitator_url",
        "pay_to_evm", "pay_to_solana", "topup_usd", "topup_tiers_usd", "max_topup_usd", "url",
        "auth_header", "auth_value", "connect_timeout_s", "read_timeout_s", "pool_size", "ca_file",
        "pattern", "prefix", "upstream", "provider", "strip_prefix", "rewrite_model",
        "model_upstreams", "input", "output", "cached_input",
    ):  # fmt: skip
        assert f"{key} " in text, key


@pytest.mark.parametrize(
    ("text", "attr", "expected"),
    [
        pytest.param(
            '[server]\nlisten = ["[::1]:8443", "0.0.0.0:80", "localhost:0"]',
            "server.listen",
            (("::1", 8443), ("0.0.0.0", 80), ("localhost", 0)),
            id="listen-v4-v6-name",
        ),
        pytest.param('[server]\nadmin_listen = ""', "server.admin_listen", None, id="admin-off"),
        pytest.param(
            '[server]\nadmin_listen = "[::]:9901"', "server.admin_listen", ("::", 9901), id="admin"
        ),
        pytest.param(
            '[server]\ntrusted_proxies = ["10.0.0.0/8", "::1", "192.168.1.7/24"]',
            "server.trusted_proxies",
            (
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("::1/128"),
                ipaddress.ip_network("192.168.1.0/24"),
            ),
            id="trusted-proxies",
        ),
        pytest.param(
            '[server]\ntls_cert = "tls/c.pem"\ntls_key = "/abs/k.pem"',
            "server.tls_key",
            Path("/abs/k.pem"),
            id="tls-absolute",
        ),
        pytest.param(
            '[server]\ntls_cert = "tls/../tls/c.pem"\ntls_key = "k.pem"',
            "server.tls_cert",
            DIR / "tls/c.pem",
            id="tls-relative",
        ),
        pytest.param(
            '[server]\npublic_url = "https://gw.example.com/"',
            "server.public_url",
            "https://gw.example.com",
            id="public-url-slash",
        ),
        pytest.param("[server]\nbody_timeout_s = 5", "server.body_timeout_s", 5.0, id="int-to-s"),
        pytest.param("[server]\nidle_timeout_s = 0.5", "server.idle_timeout_s", 0.5, id="float-s"),
        pytest.param(
            '[keys]\nfile = "../keys/k.toml"', "keys.file", Path("/etc/keys/k.toml"), id="keys-up"
        ),
        pytest.param(
            '[state]\nbackend = "redis"\nredis_url = "redis://r:6379/0"',
            "state.backend",
            "redis",
            id="redis",
        ),
        pytest.param(
            '[wallet]\njwt_previous_secret_files = ["old1", "/var/old2"]',
            "wallet.jwt_previous_secret_files",
            (DIR / "old1", Path("/var/old2")),
            id="previous-secrets",
        ),
        pytest.param(
            "[x402]\ntopup_tiers_usd = [1, 2.5]", "x402.topup_tiers_usd", (1.0, 2.5), id="tiers"
        ),
        pytest.param(
            '[upstreams.o]\nurl = "http://up"', "upstreams.o.port", 80, id="http-default-port"
        ),
        pytest.param(
            '[upstreams.o]\nurl = "https://UP.example"', "upstreams.o.host", "up.example", id="host"
        ),
        pytest.param(
            '[upstreams.o]\nurl = "https://up"', "upstreams.o.port", 443, id="https-default-port"
        ),
        pytest.param(
            '[upstreams.o]\nurl = "http://[::1]:8081/base/v1/"',
            "upstreams.o",
            ("http", "::1", 8081, "/base/v1"),
            id="v6-port-base-path",
        ),
        pytest.param(
            '[upstreams.o]\nurl = "http://up"\nca_file = "ca.pem"\npool_size = 0',
            "upstreams.o.ca_file",
            DIR / "ca.pem",
            id="ca-file",
        ),
        pytest.param(
            UP + '[[routes]]\nprefix = "/openai/"\nupstream = "o"\nprovider = "openai"\n'
            'strip_prefix = "/openai"\nrewrite_model = true\nmodel_upstreams = { anthropic = "o" }',
            "routes",
            (
                RouteConfig(
                    prefix="/openai/",
                    upstream="o",
                    provider="openai",
                    strip_prefix="/openai",
                    rewrite_model=True,
                    model_upstreams={"anthropic": "o"},
                ),
            ),
            id="route-prefix",
        ),
        pytest.param(
            '[pricing."openai/gpt-4o-mini"]\ninput = 0.15\noutput = 0',
            "pricing",
            {"openai/gpt-4o-mini": Price(input=0.15, output=0.0, cached_input=None)},
            id="pricing-no-cached",
        ),
    ],
)
def test_values(text: str, attr: str, expected: object) -> None:
    value: object = parse(text)
    for part in attr.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    if attr == "upstreams.o" and isinstance(expected, tuple):
        u = parse(text).upstreams["o"]
        value = (u.scheme, u.host, u.port, u.base_path)
    assert value == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[server]\nlisten = ["127.0.0.1:1"]\nlistn = 3\n\n[bogus]\nx = 1',
            ["3: server.listn: unknown key", "5: bogus: unknown key"],
            id="unknown-keys",
        ),
        pytest.param(
            UP + "\n[upstreams.o.extra]\nx = 1\n[[routes]]\nprefix = '/'\nupstream = 'o'\n"
            "provider = 'p'\ncolour = 'red'",
            ["4: upstreams.o.extra: unknown key", "10: routes[0].colour: unknown key"],
            id="unknown-nested",
        ),
        pytest.param(
            '[server]\nmax_body_bytes = "10"\nheader_timeout_s = 0\nidle_timeout_s = -1\n'
            "proxy_protocol = 1\nlisten = 'x'\nmax_connections = 1.5\nbody_timeout_s = nan",
            [
                "2: server.max_body_bytes: must be a positive integer, not a string",
                "3: server.header_timeout_s: must be a positive number, not 0",
                "4: server.idle_timeout_s: must be a positive number, not -1",
                "5: server.proxy_protocol: must be true or false, not 1",
                "6: server.listen: must be an array of strings, not a string",
                "7: server.max_connections: must be a positive integer, not 1.5",
                "8: server.body_timeout_s: must be a positive number, not nan",
            ],
            id="wrong-types",
        ),
        pytest.param(
            "[server]\nmax_header_bytes = true\nreuse_port = 'yes'",
            [
                "2: server.max_header_bytes: must be a positive integer, not a boolean",
                "3: server.reuse_port: must be true or false, not a string",
            ],
            id="bool-is-not-int",
        ),
        pytest.param(
            '[server]\nlisten = [\n  "localhost",\n  "[zz]:80",\n  "a:99999",\n  7,\n]',
            ["2: server.listen: must be an array of strings, not an array holding 7"],
            id="listen-item-type",
        ),
        pytest.param(
            '[server]\nlisten = ["localhost", "[zz]:80", "a:99999", "[::1]"]\nadmin_listen = "x"',
            [
                '2: server.listen: \'localhost\' is not "host:port" or "[v6]:port"',
                "2: server.listen: '[zz]:80': the part in [] is not an IPv6 address",
                '2: server.listen: \'a:99999\' is not "host:port" or "[v6]:port"',
                '2: server.listen: \'[::1]\' is not "host:port" or "[v6]:port"',
                '3: server.admin_listen: \'x\' is not "host:port" or "[v6]:port"',
            ],
            id="listen-values",
        ),
        pytest.param(
            '[server]\ntls_cert = "a.pem"\ntrusted_proxies = ["10.0.0.0/8", "nope"]\n'
            'public_url = "ftp://x"',
            [
                "1: server.tls_key: tls_cert and tls_key go together",
                "3: server.trusted_proxies: 'nope' is not an IP network (CIDR)",
                "4: server.public_url: must be an http:// or https:// URL with a host",
            ],
            id="server-values",
        ),
        pytest.param(
            'server = 1\nroutes = 2\nupstreams = { a = 1 }\npricing = "x"',
            [
                "1: server: must be a table, not 1",
                "2: routes: must be an array of tables, not 2",
                "3: upstreams.a: must be a table, not 1",
                "4: pricing: must be a table, not a string",
            ],
            id="not-tables",
        ),
        pytest.param(
            '[state]\nbackend = "redis"\npath = ""\n[keys]\nfile = ""',
            [
                '1: state.redis_url: backend = "redis" needs a redis://, rediss:// or unix:// URL',
                "3: state.path: must not be empty",
                "5: keys.file: must not be empty",
            ],
            id="state-keys",
        ),
        pytest.param(
            '[state]\nbackend = "postgres"',
            ['2: state.backend: must be "sqlite" or "redis"'],
            id="backend",
        ),
        pytest.param(
            '[wallet]\njwt_ttl_s = 0\nnetworks = ["eip155:8453", "base"]\n'
            'jwt_previous_secret_files = [""]\nallowed_models = [1]',
            [
                "2: wallet.jwt_ttl_s: must be a positive integer, not 0",
                "3: wallet.networks: 'base' is not a CAIP-2 chain id (namespace:reference)",
                "4: wallet.jwt_previous_secret_files: must not hold empty paths",
                "5: wallet.allowed_models: must be an array of strings, not an array holding 1",
            ],
            id="wallet",
        ),
        pytest.param(
            '[x402]\nenabled = true\nnetworks = ["eip155:1", '
            '"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "bad"]\npay_to_evm = "0x12"\n'
            "topup_usd = 500.0\ntopup_tiers_usd = [1, -2]\n"
            'facilitator_url = "x402.org"',
            [
                "1: x402.pay_to_solana: must be set when x402 is enabled with a solana network",
                "1: x402.max_topup_usd: topup_usd and every topup_tiers_usd must be "
                "<= max_topup_usd",
                "3: x402.networks: 'bad' is not a CAIP-2 chain id (namespace:reference)",
                "3: x402.networks: 'eip155:1' has no known USDC asset (SPEC §10)",
                "4: x402.pay_to_evm: must be a 0x address (40 hex digits)",
                "6: x402.topup_tiers_usd: must be an array of positive numbers, not an array "
                "holding -2",
                "7: x402.facilitator_url: must be an http:// or https:// URL with a host",
            ],
            id="x402",
        ),
        pytest.param(
            "[x402]\nenabled = true",
            ["1: x402.pay_to_evm: must be set when x402 is enabled with an eip155 network"],
            id="x402-needs-pay-to",
        ),
        pytest.param(
            '[upstreams.a]\nurl = "ftp://x"\n[upstreams.b]\nauth_value = "x"\n[upstreams.c]\n'
            'url = "https://u:p@x/"\nauth_header = "Bad Header"\n[upstreams.d]\n'
            'url = "http://x:99999"\n[upstreams.e]\nurl = "https://x/v1/?q=1"\n'
            '[upstreams.f]\nurl = "http://x"\nauth_value = "a\\r\\nInjected: 1"\npool_size = -1',
            [
                "2: upstreams.a.url: must be an http:// or https:// URL with a host "
                "(no user, query or #)",
                "3: upstreams.b.url: is required",
                "6: upstreams.c.url: must be an http:// or https:// URL with a host "
                "(no user, query or #)",
                "7: upstreams.c.auth_header: must be an HTTP header name",
                "9: upstreams.d.url: must be an http:// or https:// URL with a host "
                "(no user, query or #)",
                "11: upstreams.e.url: must be an http:// or https:// URL with a host "
                "(no user, query or #)",
                "14: upstreams.f.auth_value: must not contain CR, LF or NUL",
                "15: upstreams.f.pool_size: must be an integer >= 0, not -1",
            ],
            id="upstreams",
        ),
        pytest.param(
            UP + '[[routes]]\nprefix = "/v1/"\nupstream = "o"\nprovider = "openai"\n'
            '[[routes]]\npattern = "/x"\nprefix = "/y/"\nupstream = "nope"\nprovider = "x"\n'
            '[[routes]]\nupstream = "o"\n'
            '[[routes]]\nprefix = "/v1/"\nupstream = "o"\nprovider = "p"\n'
            'strip_prefix = "/zz"\nmodel_upstreams = { a = "nope" }\n'
            '[[routes]]\npattern = "v1*"\nprovider = ""',
            [
                "8: routes[1].pattern: give exactly one of pattern, prefix",
                "10: routes[1].upstream: 'nope' is not a defined upstream",
                "12: routes[2].prefix: give exactly one of pattern, prefix",
                "12: routes[2].provider: is required",
                "15: routes[3].prefix: '/v1/' is already routed",
                "18: routes[3].strip_prefix: must start with / and begin the route's prefix",
                "19: routes[3].model_upstreams.a: 'nope' is not a defined upstream",
                "21: routes[4].pattern: must start with /",
                "20: routes[4].upstream: is required",
                "22: routes[4].provider: is required",
            ],
            id="routes",
        ),
        pytest.param(
            '[pricing."gpt-4o"]\ninput = -1\nfoo = 2\n[pricing."a/b"]\ncached_input = "1"',
            [
                '1: pricing.gpt-4o: the model must be "provider/model"',
                "2: pricing.gpt-4o.input: must be a number >= 0, not -1",
                "3: pricing.gpt-4o.foo: unknown key",
                '5: pricing."a/b".cached_input: must be a number >= 0, not a string',
            ],
            id="pricing",
        ),
        pytest.param(
            '[server]\nlisten = [\n"a"\nx = 1\n',
            ["4: invalid TOML: Unclosed array (column 1)"],
            id="toml-syntax",
        ),
        pytest.param(
            "a = 1\na = 2\n",
            ["2: invalid TOML: Cannot overwrite a value (column 6)"],
            id="toml-duplicate-key",
        ),
        pytest.param(
            "a = [",
            ["1: invalid TOML: Invalid value (at end of document)"],
            id="toml-end-of-document",
        ),
        pytest.param(
            "a = " + "[" * 2000 + "]" * 2000,
            ["1: invalid TOML: values nested too deeply"],
            id="toml-too-deep",
        ),
    ],
)
def test_problems(text: str, expected: list[str]) -> None:
    found = problems(text)
    assert sorted(found) == sorted(f"{FILE}:{want}" for want in expected)
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)  # reported in file order


# -- ${VAR} and ${file:PATH} --------------------------------------------------------------


def test_env_and_file_references(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "openai").write_text("sk-from-file\n")
    (tmp_path / "raw").write_text("no-newline")
    (tmp_path / "crlf").write_bytes(b"two\r\n")
    text = (
        '[upstreams.a]\nurl = "https://${HOST}"\nauth_value = "Bearer ${file:secrets/openai}"\n'
        '[upstreams.b]\nurl = "http://x"\nauth_value = "${file:${CREDS}/openai}|${file:raw}"\n'
        '[upstreams.c]\nurl = "http://x"\nauth_value = "$${NOT_EXPANDED} ${file:crlf}"\n'
        '[server]\nlisten = ["[${BIND}]:8080"]\n'
    )
    env = {"HOST": "api.example.com", "CREDS": str(tmp_path / "secrets"), "BIND": "::"}
    c = parse(text, env, path=tmp_path / "aroutd.toml")
    assert c.upstreams["a"].host == "api.example.com"
    assert c.upstreams["a"].auth_value == "Bearer sk-from-file"
    assert c.upstreams["b"].auth_value == "sk-from-file|no-newline"
    assert c.upstreams["c"].auth_value == "${NOT_EXPANDED} two"
    assert c.server.listen == (("::", 8080),)
    assert "sk-from-file" not in repr(c)


def test_missing_references_name_the_reference_never_a_value(tmp_path: Path) -> None:
    secret = "sk-live-do-not-leak"
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    text = (
        f'[upstreams.a]\nurl = "http://x"\nauth_value = "Bearer ${{MISSING}} {secret}"\n'
        f'[upstreams.b]\nurl = "http://x"\nauth_value = "${{file:nope.txt}}{secret}"\n'
        '[upstreams.c]\nurl = "http://x"\nauth_value = "${file:bin}${oops!}${file:}"\n'
        '[upstreams.d]\nurl = "http://x"\nauth_value = "${file:${ALSO_MISSING}/k}"\n'
    )
    with pytest.raises(ConfigError) as exc:
        parse(text, {"OTHER": secret}, path=tmp_path / "c.toml")
    f = tmp_path / "c.toml"
    assert list(exc.value.problems) == [
        f"{f}:3: upstreams.a.auth_value: environment variable MISSING is not set",
        f"{f}:6: upstreams.b.auth_value: cannot read ${{file:nope.txt}}: No such file or directory",
        f"{f}:9: upstreams.c.auth_value: cannot read ${{file:bin}}: not UTF-8 text",
        f"{f}:9: upstreams.c.auth_value: not ${{VAR}} or ${{file:PATH}} (write $${{ for ${{)",
        f"{f}:9: upstreams.c.auth_value: cannot read ${{file:}}: empty path",
        f"{f}:12: upstreams.d.auth_value: environment variable ALSO_MISSING is not set",
    ]
    assert secret not in str(exc.value)
    assert secret not in repr(exc.value)


def test_secret_values_never_in_messages() -> None:
    secret = "hunter2-secret"
    text = (
        f'[upstreams.a]\nurl = "http://user:{secret}@x"\nauth_value = "{secret}\\n"\n'
        f'[state]\nbackend = "redis"\nredis_url = "http://{secret}"\n'
        f'[x402]\npay_to_evm = "{secret}"\n'
        f'[pricing."a/b"]\ninput = "{secret}"\n'
    )
    err = problems(text)
    assert len(err) == 5
    assert all(secret not in p for p in err)


def test_load_config_unreadable(tmp_path: Path) -> None:
    from aroutd.shell.files import load_config

    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "missing.toml")
    assert exc.value.problems == (
        f"{tmp_path / 'missing.toml'}: cannot read the config file: No such file or directory",
    )


# -- positions ---------------------------------------------------------------------------

POSITIONS_TEXT = '''\
top = 1
[a]
s = """
[not.a.table]
x = 1
"""
arr = [
  "[b]", # comment ]
  { k = 1 },
]
"quoted.key" = 'lit'
dotted . key = 2
[[aot]]
n = 1
[aot.sub]
m = 2
[[aot]]
n = 3
[[aot.inner]]
z = 1
[[aot.inner]]
z = 2
[ "p" . 'q' ]
r = """a\\"""
"""
t = 1
'''


@pytest.mark.parametrize(
    ("path", "line"),
    [
        pytest.param(("top",), 1, id="top"),
        pytest.param(("a",), 2, id="table"),
        pytest.param(("a", "s"), 3, id="ml-string"),
        pytest.param(("not",), 1, id="inside-string-is-not-a-table"),
        pytest.param(("a", "arr"), 7, id="ml-array"),
        pytest.param(("a", "arr", 1, "k"), 7, id="inline-falls-back"),
        pytest.param(("a", "quoted.key"), 11, id="quoted-key"),
        pytest.param(("a", "dotted", "key"), 12, id="dotted-key"),
        pytest.param(("a", "dotted"), 12, id="implicit-parent"),
        pytest.param(("aot", 0), 13, id="aot-0"),
        pytest.param(("aot", 0, "sub", "m"), 16, id="aot-sub"),
        pytest.param(("aot", 1, "n"), 18, id="aot-1"),
        pytest.param(("aot", 1, "inner", 1, "z"), 22, id="nested-aot"),
        pytest.param(("p", "q", "r"), 24, id="quoted-header"),
        pytest.param(("p", "q", "t"), 26, id="after-escaped-quote"),
        pytest.param(("nothing",), 1, id="unknown"),
    ],
)
def test_positions(path: tuple[str | int, ...], line: int) -> None:
    assert scan_positions(POSITIONS_TEXT).line(path) == line


def test_dotted() -> None:
    assert dotted(("pricing", "openai/gpt-4o", "input")) == 'pricing."openai/gpt-4o".input'
    assert dotted(("routes", 2, "upstream")) == "routes[2].upstream"


# -- anything in, Config or ConfigError out ----------------------------------------------

_KEYS = st.sampled_from(
    ["server", "listen", "url", "upstreams", "routes", "x", "pricing", "keys", "file", "prefix"]
)
_VALUES = st.sampled_from(
    ['"a"', "1", "-1", "1.5", "true", "[]", '["127.0.0.1:1"]', "{}", '"${X}"', '"${file:}"',
     "inf", "nan", "1979-05-27T07:32:00Z", '"http://h"', '[1, "a"]', '"/v1/"']
)  # fmt: skip
_LINES = st.one_of(
    st.builds(lambda k: f"[{k}]", _KEYS),
    st.builds(lambda k: f"[[{k}]]", _KEYS),
    st.builds(lambda a, b: f"[{a}.{b}]", _KEYS, _KEYS),
    st.builds(lambda k, v: f"{k} = {v}", _KEYS, _VALUES),
    st.text(max_size=20),
)


def outcome(text: str) -> tuple[str, ...]:
    """() when ``text`` parses, else its problems; any other exception fails the test."""
    try:
        parse(text, {"X": "1"})
    except ConfigError as exc:
        return exc.problems or ("(no problems listed)",)
    return ()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    assert all(p.startswith(f"{FILE}:") for p in outcome(text))


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINES, max_size=12))
def test_arbitrary_toml_like(lines: list[str]) -> None:
    assert all(p.startswith(f"{FILE}:") for p in outcome("\n".join(lines)))


@pytest.mark.parametrize(
    ("text", "environ", "db", "secret"),
    [
        pytest.param("", {}, DIR / "state/aroutd.db", DIR / "state/jwt.secret", id="beside-config"),
        pytest.param(
            "", {"STATE_DIRECTORY": "/var/lib/aroutd"},
            Path("/var/lib/aroutd/aroutd.db"), Path("/var/lib/aroutd/jwt.secret"), id="systemd",
        ),
        pytest.param(
            "", {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"},
            Path("/var/lib/a/aroutd.db"), Path("/var/lib/a/jwt.secret"), id="first-of-several",
        ),
        pytest.param(
            "", {"STATE_DIRECTORY": "relative"},
            DIR / "state/aroutd.db", DIR / "state/jwt.secret", id="relative-ignored",
        ),
        pytest.param(
            '[state]\npath = "db/x.db"\n[wallet]\njwt_secret_file = "/k/s"\n',
            {"STATE_DIRECTORY": "/var/lib/aroutd"},
            DIR / "db/x.db", Path("/k/s"), id="config-says-otherwise",
        ),
    ],
)  # fmt: skip
def test_state_paths_follow_systemd_state_directory(
    text: str, environ: dict[str, str], db: Path, secret: Path
) -> None:
    c = parse(text, environ=environ)
    assert (c.state.path, c.wallet.jwt_secret_file) == (db, secret)
