"""Config strings with ``${VAR}`` and ``${file:PATH}`` expanded; paths against the config (SPEC §2).

:func:`expand_values` replaces the references in every string of a parsed TOML
document before anything reads it; ``$${`` is a literal ``${``. :func:`absolute`
resolves a path written in the config against the config file's folder. The
``${file:...}`` references are read through the caller's ``read_file`` (the
shell passes one that reads the disk), so nothing here touches a file itself. Problems go to the
caller's :class:`~aroutd.config.tomlpos.Problems` and name the variable or file, never a
value: values may be secrets (SPEC §12).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aroutd.config.tomlscan import KeyPath, dotted

if TYPE_CHECKING:  # tomlpos re-exports this module's names: import it for types only
    from aroutd.config.tomlpos import Problems

__all__ = ["FileReader", "absolute", "expand_values"]

FileReader = Callable[[Path], bytes]  # the bytes of a file, or OSError / ValueError

# "$${" | "${file:PATH}" (PATH may use ${VAR}) | "${VAR}" (or anything else in braces: an error)
_REFERENCE_RE = re.compile(
    r"\$\$\{|\$\{file:((?:[^{}]|\$\{[A-Za-z_][A-Za-z0-9_]*\})*)\}|\$\{([^}]*)\}"
)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_values(
    value: Any,
    path: KeyPath,
    problems: Problems,
    environ: Mapping[str, str],
    base: Path,
    read_file: FileReader,
) -> Any:
    """Every string in ``value`` with ``${VAR}`` and ``${file:PATH}`` replaced (SPEC §2).

    ``$${`` stands for a literal ``${``. A file's content loses one trailing newline
    (systemd ``LoadCredential=``); its PATH may use ``${VAR}``, as in
    ``${file:${CREDENTIALS_DIRECTORY}/openai}``. Problems name the variable or file,
    never a value.
    """
    if isinstance(value, str):
        return _expand(value, path, problems, environ, base, read_file) if "${" in value else value
    if isinstance(value, list):
        return [
            expand_values(v, (*path, i), problems, environ, base, read_file)
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            k: expand_values(v, (*path, k), problems, environ, base, read_file)
            for k, v in value.items()
        }
    return value


def _expand(
    text: str,
    path: KeyPath,
    problems: Problems,
    environ: Mapping[str, str],
    base: Path,
    read_file: FileReader,
) -> str:
    def replace(m: re.Match[str]) -> str:
        file_ref, ref = m.group(1), m.group(2)
        if file_ref is not None:
            before = len(problems)
            name = _expand(file_ref, path, problems, environ, base, read_file)
            if len(problems) > before:  # its ${VAR} is missing: that is the one problem
                return ""
            return _read_reference(name, path, problems, base, read_file)
        if ref is None:  # "$${"
            return "${"
        if not _ENV_NAME_RE.fullmatch(ref):
            problems.add(
                path, f"{dotted(path)}: not ${{VAR}} or ${{file:PATH}} (write $${{ for ${{)"
            )
            return ""
        found = environ.get(ref)
        if found is None:
            problems.add(path, f"{dotted(path)}: environment variable {ref} is not set")
            return ""
        return found

    return _REFERENCE_RE.sub(replace, text)


def _read_reference(
    name: str, path: KeyPath, problems: Problems, base: Path, read_file: FileReader
) -> str:
    where = f"{dotted(path)}: cannot read ${{file:{name}}}"
    if not name:
        problems.add(path, f"{where}: empty path")
        return ""
    try:
        data = read_file(base / name)
    except OSError as exc:
        problems.add(path, f"{where}: {exc.strerror or 'cannot open'}")
        return ""
    except ValueError:  # e.g. an embedded NUL byte in the name
        problems.add(path, f"{where}: invalid file name")
        return ""
    try:
        content = data.decode()
    except UnicodeDecodeError:
        problems.add(path, f"{where}: not UTF-8 text")
        return ""
    for ending in ("\r\n", "\n"):
        if content.endswith(ending):
            return content[: -len(ending)]
    return content


def absolute(base: Path, name: str) -> Path:
    """``name`` resolved against ``base`` (the config file's folder), normalized."""
    return Path(posixpath.normpath(base / name))
