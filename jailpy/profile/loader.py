"""Find, parse, validate and expand profiles, following `extends`.

Resolution: a reference containing '/' or ending in '.toml' is a path
(relative paths in `extends` are relative to the extending file); anything
else is a name searched in $XDG_CONFIG_HOME/jailpy/profiles, then
/etc/jailpy/profiles, then the profiles shipped with jailpy. A profile that
extends its own name (~/.config/jailpy/profiles/default.toml with
`extends = ["default"]`) gets the next profile of that name down the search
path, so local tweaks of a shipped profile need no copy of it.

Each file is checked on its own, before merging (structure, then ${VAR}
expansion with that file's ${PROFILE_DIR}, then values), so an error names
the file it is in. The merge rules are in merge.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import schema
from .emit import key as toml_key
from .expand import expand
from .merge import Merged, merge  # noqa: F401  (re-exported: the public layering API)

#: Keys whose strings are taken literally (no ${VAR} expansion).
LITERAL_KEYS = {"description", "content"}
_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def shipped_profiles_dir() -> Path:
    """Profiles installed as package data, or the source tree's profiles/."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "profiles"
    return packaged if packaged.is_dir() else here.parent / "profiles"


def search_path(env: dict[str, str]) -> list[tuple[str, Path]]:
    """(label, directory) in search order: user, system, shipped."""
    config = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or "/", ".config")
    return [("user", Path(config) / "jailpy" / "profiles"),
            ("system", Path("/etc/jailpy/profiles")),
            ("shipped", shipped_profiles_dir())]


def is_path(ref: str) -> bool:
    """True when a profile reference names a file rather than a profile."""
    return "/" in ref or ref.endswith(".toml")


def _valid_name(ref: str, origin: str) -> None:
    if not ref or ref.startswith(".") or "\0" in ref:
        raise ConfigError(f"not a profile name: {ref!r}", origin=origin,
                          hint="use a name like 'default' or a path like ./my.toml")


def candidates(name: str, env: dict[str, str]) -> list[Path]:
    """Every file that provides profile `name`, in search order."""
    found = []
    for _, directory in search_path(env):
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            found.append(candidate)
    return found


def locate(ref: str, env: dict[str, str], relative_to: Path | None = None,
           origin: str | None = None, extender: Path | None = None) -> Path:
    """Resolve a profile name or path to a file.

    `extender` is the file whose `extends` names `ref`: if the name resolves to
    that very file, the next file of the same name down the search path is used.
    """
    origin = origin or "--profile"
    if is_path(ref):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"profile file not found: {ref}", origin=origin)
        return Path(os.path.abspath(path))
    _valid_name(ref, origin)
    found = candidates(ref, env)
    if extender is not None:
        same = [i for i, p in enumerate(found) if _same_file(p, extender)]
        if same:
            found = found[same[0] + 1:]
    if found:
        return found[0]
    dirs = ", ".join(str(d) for _, d in search_path(env))
    names = sorted({p.stem for _, d in search_path(env) if d.is_dir() for p in d.glob("*.toml")})
    if extender is not None and candidates(ref, env):
        raise ConfigError(f"profile '{ref}' extends itself and there is no '{ref}' further "
                          "down the search path", origin=origin, hint=f"searched {dirs}")
    raise ConfigError(f"no profile named '{ref}'", origin=origin,
                      hint=schema.suggest(ref, names) or f"searched {dirs}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def parse_file(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become ConfigError 'FILE:LINE:COL: ...'."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", origin=str(path)) from None
    return parse_bytes(data, str(path))


def parse_bytes(data: bytes, source: str) -> dict[str, Any]:
    """Parse TOML text that came from `source`."""
    import tomllib

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", origin=f"{source}:{line}") \
            from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _POSITION.search(message)
        where = source
        if match is not None:
            message = message[:match.start()]
            if match.group(1):
                where = f"{source}:{match.group(1)}:{match.group(2)}"
        raise ConfigError(f"TOML syntax error: {message}", origin=where) from None
    except RecursionError:
        raise ConfigError("TOML syntax error: arrays or tables nested too deeply",
                          origin=source) from None


@dataclass
class Layer:
    """One document to merge: a profile file or the CLI overrides."""

    doc: dict[str, Any]
    source: str
    #: Origins of values: for an array key, one per item; for other keys, one item.
    #: Default: "<source>: key[i]" for array items, "<source>" for the rest.
    item_origins: dict[str, list[str]] = field(default_factory=dict)


def expand_document(doc: Any, variables: dict[str, str], origin: str, key: str = "") -> Any:
    """Expand ${VARS} in every string of doc except literal keys' values."""
    if isinstance(doc, str):
        return doc if key in LITERAL_KEYS else expand(doc, variables, origin)
    if isinstance(doc, list):
        return [expand_document(v, variables, f"{origin}[{i}]", key) for i, v in enumerate(doc)]
    if isinstance(doc, dict):
        return {k: expand_document(v, variables, f"{origin}.{toml_key(k)}", k)
                for k, v in doc.items()}
    return doc


def _key_origin(source: str, key: str) -> str:
    return f"{source}: {key}"


def load_file(path: Path, variables: dict[str, str]) -> dict[str, Any]:
    """One profile file: parsed, checked and expanded (its `extends` too)."""
    source = str(path)
    doc = parse_file(path)
    schema.check_structure(doc, source)
    scoped = dict(variables, PROFILE_DIR=str(path.parent.resolve()))
    expanded = {k: expand_document(v, scoped, _key_origin(source, k), k) for k, v in doc.items()}
    schema.check_values(expanded, source)
    return expanded


def load_layers(ref: str, env: dict[str, str], variables: dict[str, str]) -> list[Layer]:
    """The profile and everything it extends, base first, each file once."""
    layers: list[Layer] = []
    _load(ref, env, variables, layers, set(), (), None, None, None)
    return layers


def _load(ref: str, env: dict[str, str], variables: dict[str, str], layers: list[Layer],
          seen: set[str], chain: tuple[str, ...], relative_to: Path | None,
          origin: str | None, extender: Path | None) -> None:
    path = locate(ref, env, relative_to, origin, extender)
    key = os.path.realpath(path)
    if key in chain:
        cycle = " -> ".join([*chain[chain.index(key):], key])
        raise ConfigError(f"profiles extend each other in a cycle: {cycle}",
                          origin=origin or str(path))
    if key in seen:  # diamond: a base already applied is not applied again
        return
    doc = load_file(path, variables)
    for i, parent in enumerate(doc.get("extends", [])):
        _load(parent, env, variables, layers, seen, (*chain, key), path.parent,
              f"{path}: extends[{i}]", path)
    seen.add(key)
    layers.append(Layer({k: v for k, v in doc.items() if k != "extends"}, str(path)))
