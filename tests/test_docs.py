"""docs/ tell the truth about the code: every config key and every error message is documented.

1. Every key the config parser accepts is a row of its section's table in
   ``docs/configuration.md``, and every row there is a key the parser accepts. The
   keys are the fields of the dataclasses in ``aroutd/config/values.py`` (the parser
   reads each field under its own name), minus the fields that are not TOML keys,
   listed with the reason in ``NOT_KEYS``; the parser itself is asked which names it
   accepts, so a rename or a new exclusion cannot go unnoticed. The key table's fields
   are held to ``docs/keytable.md`` the same way.
2. Every error message the code can produce is in ``docs/http-api.md``, in backticks.
   The messages are found by walking the AST of every module under ``aroutd/`` (the
   bundled mock upstream aside) for calls to the ``HTTPError`` classes of
   ``aroutd.errors``: string literals, module-level ``MSG_*`` constants (imported ones
   too), f-strings (their constant parts must appear in order, each ``{...}`` standing
   for a documented placeholder such as ``X``), and helpers that *return* such an error
   built from a parameter (``_bad(why)``), followed to each of their call sites. A
   message the walk cannot work out fails the test, rather than being skipped.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aroutd import errors
from aroutd.config import values
from aroutd.config.parse import parse_config
from aroutd.errors import ConfigError
from aroutd.keytable.table import KeyEntry, Tenant, parse_keytable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aroutd"
DOCS = ROOT / "docs"
EXCLUDED_PACKAGES = ("aroutd.mock",)  # the bundled fake upstream answers for providers

# -- 1. configuration keys ----------------------------------------------------------------

# A section of aroutd.toml: its heading in configuration.md, the dataclass its keys come
# from, a TOML text that opens one such table, and how problems name its keys.
SECTIONS: tuple[tuple[str, type[Any], str, str], ...] = (
    ("[server]", values.ServerConfig, "[server]\n", "server."),
    ("[keys]", values.KeysConfig, "[keys]\n", "keys."),
    ("[state]", values.StateConfig, "[state]\n", "state."),
    ("[wallet]", values.WalletConfig, "[wallet]\n", "wallet."),
    ("[x402]", values.X402Config, "[x402]\n", "x402."),
    ("[upstreams.NAME]", values.UpstreamConfig, "[upstreams.u]\n", "upstreams.u."),
    ("[[routes]]", values.RouteConfig, "[[routes]]\n", "routes[0]."),
    ('[pricing."provider/model"]', values.Price, '[pricing."p/m"]\n', 'pricing."p/m".'),
)
# Dataclass fields that are not TOML keys (parse.py computes them), and why.
NOT_KEYS: Mapping[tuple[type[Any], str], str] = {
    (values.UpstreamConfig, "name"): "the NAME of [upstreams.NAME], a table name",
    (values.UpstreamConfig, "scheme"): "computed from url",
    (values.UpstreamConfig, "host"): "computed from url",
    (values.UpstreamConfig, "port"): "computed from url (80 / 443 when it has none)",
    (values.UpstreamConfig, "base_path"): "computed from url's path",
}
# The top-level Config: each field is a section above, except its own path.
CONFIG_NOT_SECTIONS = {"path": "the config file's own path, computed"}
CONFIG_FILE = Path("/etc/aroutd/aroutd.toml")


def _parse_problems(text: str) -> list[str]:
    try:
        parse_config(text, path=CONFIG_FILE, cwd=Path("/"), environ={}, read_file=_no_files)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _no_files(path: Path) -> bytes:
    raise AssertionError(f"the probes read no file, not {path}")


def _accepted(opening: str, label: str, name: str) -> bool:
    """Whether the parser takes ``name`` in this table: a value of the wrong type (an inline
    table) gives any problem but ``unknown key``."""
    found = _parse_problems(f"{opening}{name} = {{}}\n")
    return not any(p.endswith(f": {label}{name}: unknown key") for p in found)


def _sections(markdown: str, depth: int) -> dict[str, str]:
    """Heading line of ``depth`` (2: "## ") -> its text, up to the next heading as deep or less."""
    out: dict[str, str] = {}
    heading, lines, fenced = "", list[str](), False
    for line in [*markdown.splitlines(), "#"]:
        fenced ^= line.startswith("```")  # a "# comment" in a code block is no heading
        level = 0 if fenced else len(line) - len(line.lstrip("#"))
        if 0 < level <= depth and line[level : level + 1] in (" ", ""):
            if heading:
                out[heading] = "\n".join(lines)
            heading, lines = (line if level == depth else ""), []
        else:
            lines.append(line)
    return out


def _section(markdown: str, depth: int, name: str) -> str:
    hits = [body for head, body in _sections(markdown, depth).items() if f"`{name}`" in head]
    assert len(hits) == 1, f"expected one heading with `{name}`, found {len(hits)}"
    return hits[0]


def _rows(body: str) -> set[str]:
    """The keys a section documents: table rows that start with | `key` |."""
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", body, re.M))


def _config_keys(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if (cls, f.name) not in NOT_KEYS}


CONFIGURATION_MD = (DOCS / "configuration.md").read_text(encoding="utf-8")


def test_every_config_section_is_covered() -> None:
    fields = {f.name for f in dataclasses.fields(values.Config)} - set(CONFIG_NOT_SECTIONS)
    covered = {re.sub(r"^\[*([a-z0-9]+).*", r"\1", s[2].strip()) for s in SECTIONS}
    assert fields == covered


@pytest.mark.parametrize(
    ("heading", "cls", "opening", "label"), SECTIONS, ids=[s[0] for s in SECTIONS]
)
def test_the_parser_accepts_exactly_the_dataclass_fields(
    heading: str, cls: type[Any], opening: str, label: str
) -> None:
    keys = _config_keys(cls)
    assert keys, heading
    refused = sorted(k for k in keys if not _accepted(opening, label, k))
    assert refused == [], f"{heading}: fields the parser does not take as keys"
    not_keys = sorted(name for (c, name) in NOT_KEYS if c is cls)
    taken = [k for k in not_keys if _accepted(opening, label, k)]
    assert taken == [], f"{heading}: NOT_KEYS that the parser does take; document them"


@pytest.mark.parametrize(
    ("heading", "cls", "opening", "label"), SECTIONS, ids=[s[0] for s in SECTIONS]
)
def test_every_config_key_is_documented_in_its_section(
    heading: str, cls: type[Any], opening: str, label: str
) -> None:
    rows = _rows(_section(CONFIGURATION_MD, 2, heading))
    keys = _config_keys(cls)
    assert sorted(keys - rows) == [], f"{heading}: keys missing from docs/configuration.md"
    assert sorted(rows - keys) == [], f"{heading}: documented keys the parser does not accept"


def test_the_probe_can_tell_an_unknown_key() -> None:
    assert not _accepted("[server]\n", "server.", "made_up_key")
    assert _accepted("[server]\n", "server.", "listen")


def test_sections_and_rows_of_a_made_up_page() -> None:
    page = (
        "## `[a]`\n| `x` | a key |\n```toml\n# a comment, not a heading\n```\n"
        "### more\n| `w` | another |\nx = 1 `y` |\n## `[b]`\n| `v` | |\n"
    )
    assert _rows(_section(page, 2, "[a]")) == {"x", "w"}
    assert _rows(_section(page, 2, "[b]")) == {"v"}
    assert _rows(_section(page, 2, "[a]")) != _config_keys(values.KeysConfig)


# The key table: [tenants.ID] fields from Tenant, [[keys]] fields from KeyEntry.
KEYTABLE_MD = (DOCS / "keytable.md").read_text(encoding="utf-8")
TENANT_NOT_FIELDS = {"id": "the ID of [tenants.ID], a table name"}
KEY_RENAMED = {"digest": "sha256"}  # written as hex, held as bytes
KEY_NOT_FIELDS = {
    "source": "where an entry came from (the file or the store), computed",
    "created_at": "keys of the management API only, kept in the state store",
    "updated_at": "keys of the management API only, kept in the state store",
    "created_by": "keys of the management API only: the management key that made it",
}


def _keytable_problems(text: str) -> list[str]:
    try:
        parse_keytable(text, path=Path("keys.toml"))
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _tenant_field_accepted(name: str) -> bool:
    found = _keytable_problems(f"[tenants.t]\n{name} = {{}}\n")
    return not any(p.endswith(f"tenant 't': {name}: unknown field") for p in found)


def _key_field_accepted(name: str) -> bool:
    found = _keytable_problems(f"[tenants.t]\n[[keys]]\n{name} = {{}}\n")
    return not any(p.endswith(f"key #1: {name}: unknown field") for p in found)


def test_every_key_table_field_is_accepted_and_documented() -> None:
    tenant = {f.name for f in dataclasses.fields(Tenant)} - set(TENANT_NOT_FIELDS)
    key = {KEY_RENAMED.get(f.name, f.name) for f in dataclasses.fields(KeyEntry)}
    key -= set(KEY_NOT_FIELDS)
    assert [f for f in sorted(tenant) if not _tenant_field_accepted(f)] == []
    assert [f for f in sorted(key) if not _key_field_accepted(f)] == []
    assert [f for f in TENANT_NOT_FIELDS if _tenant_field_accepted(f)] == []
    assert [f for f in [*KEY_RENAMED, *KEY_NOT_FIELDS] if _key_field_accepted(f)] == []
    assert _rows(_section(KEYTABLE_MD, 3, "[tenants.ID]")) == tenant
    assert _rows(_section(KEYTABLE_MD, 3, "[[keys]]")) == key


# -- 2. error messages --------------------------------------------------------------------

HTTP_ERRORS = frozenset(
    name
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.HTTPError)
)


@dataclass(frozen=True, slots=True)
class Hole:
    """The variable part of a message: a ``{...}`` of an f-string (``param``: the parameter
    of the enclosing function it names, if any)."""

    param: str | None = None


Part = str | Hole
Template = tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Found:
    where: str  # "aroutd/x.py:12"
    template: Template | None  # None: the message could not be worked out


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` (and annotated) assignments."""
    out: dict[str, str] = {}
    for node in tree.body:
        target: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        is_text = isinstance(value, ast.Constant) and isinstance(value.value, str)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and is_text:
            out[target.id] = str(value.value)
    return out


class _Module:
    """What one module's messages are made of: its constants, imports and error names."""

    def __init__(
        self, tree: ast.Module, name: str, constants: Mapping[str, Mapping[str, str]]
    ) -> None:
        self.constants = _string_constants(tree)
        self.error_names = set(HTTP_ERRORS) if name == "aroutd.errors" else set()
        self.error_modules: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                for alias in node.names:
                    local = alias.asname or alias.name
                    if node.module == "aroutd.errors" and alias.name in HTTP_ERRORS:
                        self.error_names.add(local)
                    elif node.module == "aroutd" and alias.name == "errors":
                        self.error_modules.add(local)
                    elif alias.name in constants.get(node.module, {}):
                        self.constants[local] = constants[node.module][alias.name]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "aroutd.errors":
                        self.error_modules.add(alias.asname or alias.name)

    def is_error_class(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self.error_names
        return (
            isinstance(func, ast.Attribute)
            and func.attr in HTTP_ERRORS
            and ast.unparse(func.value) in self.error_modules
        )

    def template(self, node: ast.expr, params: frozenset[str]) -> Template | None:
        """The message ``node`` evaluates to, its variable parts as holes; None if unknown."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return (node.value,)
        if isinstance(node, ast.JoinedStr):
            parts: list[Part] = []
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                elif isinstance(value, ast.FormattedValue):
                    inner = value.value
                    named = isinstance(inner, ast.Name) and inner.id in params
                    parts.append(Hole(ast.unparse(inner) if named else None))
            return tuple(parts)
        if isinstance(node, ast.Name):
            if node.id in self.constants:
                return (self.constants[node.id],)
            return (Hole(node.id),) if node.id in params else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.template(node.left, params), self.template(node.right, params)
            return None if left is None or right is None else left + right
        return None


def _message_arg(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "message"), None)


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, frozenset[str]]]:
    """Every node with the parameters of the function it is in (innermost)."""

    def walk(node: ast.AST, params: frozenset[str]) -> Iterator[tuple[ast.AST, frozenset[str]]]:
        yield node, params
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            params = frozenset(x.arg for x in every if x is not None)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, params)

    yield from walk(tree, frozenset())


def _wrappers(tree: ast.Module, mod: _Module) -> dict[str, tuple[list[str], Template]]:
    """Functions that return an error whose message uses a parameter: name -> (params, it)."""
    out: dict[str, tuple[list[str], Template]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
        for ret in ast.walk(node):
            call = ret.value if isinstance(ret, ast.Return) else None
            if not isinstance(call, ast.Call) or not mod.is_error_class(call.func):
                continue
            arg = _message_arg(call)
            it = None if arg is None else mod.template(arg, frozenset(params))
            if it is not None and any(isinstance(p, Hole) and p.param in params for p in it):
                out[node.name] = (params, it)
    return out


def _wrapper_call(
    call: ast.Call, wrapper: tuple[list[str], Template], mod: _Module, params: frozenset[str]
) -> Template | None:
    names, it = wrapper
    given = dict(zip(names, call.args, strict=False))
    given.update((k.arg, k.value) for k in call.keywords if k.arg is not None)
    out: list[Part] = []
    for part in it:
        if isinstance(part, Hole) and part.param in names:
            arg = given.get(part.param)
            sub = None if arg is None else mod.template(arg, params)
            if sub is None:
                return None
            out += sub
        else:
            out.append(part)
    return tuple(out)


def collect(source: str, name: str, constants: Mapping[str, Mapping[str, str]]) -> list[Found]:
    """Every message module ``name`` (its ``source``) can raise or return an HTTPError with."""
    tree = ast.parse(source)
    mod = _Module(tree, name, constants)
    wrappers = _wrappers(tree, mod)
    returned = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Call)
    }
    where = name.replace(".", "/") + ".py"
    found: list[Found] = []
    for node, params in _scopes(tree):
        if not isinstance(node, ast.Call):
            continue
        at = f"{where}:{node.lineno}"
        if isinstance(node.func, ast.Name) and node.func.id in wrappers:
            found.append(_found(at, _wrapper_call(node, wrappers[node.func.id], mod, params)))
        elif mod.is_error_class(node.func):
            arg = _message_arg(node)
            it = None if arg is None else mod.template(arg, params)
            wrapped = it is not None and any(isinstance(p, Hole) and p.param for p in it)
            if wrapped and id(node) in returned and _in_wrapper(tree, node, wrappers):
                continue  # a helper's template: its call sites carry the messages
            found.append(_found(at, it))
    return found


def _found(where: str, template: Template | None) -> Found:
    """Adjacent fixed parts joined; a message with no fixed text at all is unknown."""
    if template is None or not any(isinstance(p, str) and p for p in template):
        return Found(where, None)
    parts: list[Part] = []
    for part in template:
        if isinstance(part, str) and parts and isinstance(parts[-1], str):
            parts[-1] += part
        elif part != "":
            parts.append(part)
    return Found(where, tuple(parts))


def _in_wrapper(tree: ast.Module, call: ast.Call, wrappers: Mapping[str, object]) -> bool:
    return any(
        isinstance(node, ast.FunctionDef)
        and node.name in wrappers
        and any(n is call for n in ast.walk(node))
        for node in ast.walk(tree)
    )


def _package_sources() -> dict[str, str]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if not name.startswith(EXCLUDED_PACKAGES):
            out[name] = path.read_text(encoding="utf-8")
    return out


def collect_package() -> list[Found]:
    sources = _package_sources()
    constants = {n: _string_constants(ast.parse(s)) for n, s in sources.items()}
    return [f for n, s in sources.items() for f in collect(s, n, constants)]


def shown(template: Template) -> str:
    return "".join(p if isinstance(p, str) else "{…}" for p in template)


def pattern(template: Template) -> re.Pattern[str]:
    """The message in backticks, each hole any non-empty text on one line."""
    body = "".join(re.escape(p) if isinstance(p, str) else "[^`\n]+?" for p in template)
    return re.compile(f"`{body}`")


def missing_from(doc: str, templates: Sequence[Template]) -> list[str]:
    """The messages among ``templates`` that ``doc`` does not show in backticks."""
    return sorted({shown(t) for t in templates if not pattern(t).search(doc)})


HTTP_API_MD = (DOCS / "http-api.md").read_text(encoding="utf-8")
FOUND = collect_package()


def test_every_message_can_be_worked_out() -> None:
    unknown = [f.where for f in FOUND if f.template is None]
    assert unknown == [], "HTTPError messages the walk cannot read; make them literals"
    vague = [f.where for f in FOUND if f.template and len(_fixed_text(f.template)) < 3]
    assert vague == [], "messages that are (nearly) all placeholder"


def _fixed_text(template: Template) -> str:
    return re.sub(r"[^A-Za-z]", "", "".join(p for p in template if isinstance(p, str)))


def test_the_walk_finds_the_messages() -> None:
    messages = {f.template for f in FOUND}
    assert len(messages) > 50
    for known in (
        ("invalid api key",),  # a literal
        ("internal error",),  # MSG_INTERNAL in the same module
        ("invalid request path",),  # MSG_INVALID_PATH in target.py
        ("management keys cannot call inference endpoints",),  # MSG_* constant
        ("upstream request failed",),  # returned by a helper without parameters
        ("invalid SIWx message: too long",),  # a helper's template at a call site
        ("provider '", Hole("provider"), "' is not allowed for this API key"),  # f-string
    ):
        assert known in messages, known
    assert all(f.where.startswith("aroutd/") and "/mock/" not in f.where for f in FOUND)


def test_every_error_message_is_documented() -> None:
    templates = [f.template for f in FOUND if f.template is not None]
    assert missing_from(HTTP_API_MD, templates) == [], "add these to docs/http-api.md"


SAMPLE = """
from aroutd.errors import BadRequest as Bad, Forbidden
from aroutd.target import MSG_INVALID_PATH
MSG_LOCAL = "local constant"

def _bad(why):
    return Bad(f"prefix: {why}")

def check(provider, x):
    if x:
        raise Bad("a literal")
    if provider:
        raise Forbidden(f"provider '{provider}' is made up")
    raise _bad("reason")

def more(x):
    _bad(f"line {x + 1} is wrong")
    Bad(MSG_LOCAL + "!", close=True)
    Bad(MSG_INVALID_PATH)
    Bad(x)
    ValueError("not an HTTP error")
"""


def test_the_walk_on_a_sample_module() -> None:
    constants = {"aroutd.target": {"MSG_INVALID_PATH": "invalid request path"}}
    found = collect(SAMPLE, "aroutd.sample", constants)
    assert [f.template for f in found] == [
        ("a literal",),
        ("provider '", Hole("provider"), "' is made up"),
        ("prefix: reason",),
        ("prefix: line ", Hole(None), " is wrong"),
        ("local constant!",),
        ("invalid request path",),
        None,  # Bad(x): a message the walk cannot know is reported, not skipped
    ]
    assert found[0].where == "aroutd/sample.py:11"


def test_a_made_up_message_is_reported_missing() -> None:
    doc = "| `not found` | … |\n| `provider 'X' is not allowed for this API key` |\n"
    templates: list[Template] = [
        ("not found",),
        ("provider '", Hole("provider"), "' is not allowed for this API key"),
        ("a made-up message nobody documented",),
        ("model '", Hole(), "' is made up too"),
        ("not",),  # a message must appear whole, in backticks, not as part of another
    ]
    assert missing_from(doc, templates) == [
        "a made-up message nobody documented",
        "model '{…}' is made up too",
        "not",
    ]
    assert missing_from(HTTP_API_MD, [("a made-up message nobody documented",)]) != []
