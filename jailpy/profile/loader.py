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

from ..errors import ConfigError
from ..usercache import config_dir
from . import schema
from .expand import expand
from .merge import Layer, Merged, merge  # noqa: F401  (re-exported: the public layering API)

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .cache import ParseCache

#: Keys whose strings are taken literally (no ${VAR} expansion).
LITERAL_KEYS = {"description", "content"}
#: Profiles are read whole and parsed: anything this big is not one (jailpy-profile(5)).
MAX_FILE_SIZE = 4 << 20
_POSITION = r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$"


def _shipped_dir() -> str:
    # Plain os.path, not pathlib: this runs on every `jailpy run`, and pathlib
    # costs milliseconds to import.
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    packaged = os.path.join(package, "profiles")
    return packaged if os.path.isdir(packaged) else \
        os.path.join(os.path.dirname(package), "profiles")


def shipped_profiles_dir() -> "Path":
    """Profiles installed as package data, or the source tree's profiles/."""
    from pathlib import Path

    return Path(_shipped_dir())


def search_path(env: dict[str, str]) -> list[tuple[str, str]]:
    """(label, directory) in search order: user, system, shipped."""
    return [("user", os.path.join(config_dir(env), "profiles")),
            ("system", "/etc/jailpy/profiles"),
            ("shipped", _shipped_dir())]


def is_path(ref: str) -> bool:
    """True when a profile reference names a file rather than a profile."""
    return "/" in ref or ref.endswith(".toml")


def _valid_name(ref: str, origin: str) -> None:
    if not ref or ref.startswith(".") or "\0" in ref:
        raise ConfigError(f"not a profile name: {ref!r}", origin=origin,
                          hint="use a name like 'default' or a path like ./my.toml")


def candidates(name: str, env: dict[str, str]) -> list[str]:
    """Every file that provides profile `name`, in search order."""
    found = []
    for _, directory in search_path(env):
        candidate = os.path.join(directory, f"{name}.toml")
        if os.path.isfile(candidate):
            found.append(candidate)
    return found


def profile_names(env: dict[str, str]) -> list[str]:
    """The names of all profiles on the search path."""
    names = set()
    for _, directory in search_path(env):
        try:
            names.update(n[:-5] for n in os.listdir(directory) if n.endswith(".toml"))
        except OSError:
            pass
    return sorted(names)


def locate(ref: str, env: dict[str, str], relative_to: str | None = None,
           origin: str | None = None, extender: str | None = None) -> str:
    """Resolve a profile name or path to a file.

    `extender` is the file whose `extends` names `ref`: if the name resolves to
    that very file, the next file of the same name down the search path is used.
    """
    origin = origin or "--profile"
    if is_path(ref):
        path = ref
        if not os.path.isabs(path) and relative_to is not None:
            path = os.path.join(relative_to, path)
        if not os.path.isfile(path):
            raise ConfigError(f"profile file not found: {ref}", origin=origin)
        return os.path.abspath(path)
    _valid_name(ref, origin)
    found = candidates(ref, env)
    if extender is not None:
        same = [i for i, p in enumerate(found) if _same_file(p, extender)]
        if same:
            found = found[same[0] + 1:]
    if found:
        return found[0]
    dirs = ", ".join(d for _, d in search_path(env))
    names = profile_names(env)
    if extender is not None and candidates(ref, env):
        raise ConfigError(f"profile '{ref}' extends itself and there is no '{ref}' further "
                          "down the search path", origin=origin, hint=f"searched {dirs}")
    raise ConfigError(f"no profile named '{ref}'", origin=origin,
                      hint=schema.suggest(ref, names) or f"searched {dirs}")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def parse_file(path: str, cache: "ParseCache | None" = None) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become ConfigError 'FILE:LINE:COL: ...'.

    With a cache, a file whose identity and timestamps are unchanged is not
    read or parsed again (see cache.py)."""
    key = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if cache is not None:
                from .cache import stat_key

                key = stat_key(os.fstat(fd))
                cached = cache.get(path, key)
                if cached is not None:
                    return cached
            chunks, size = [], 0
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_FILE_SIZE:
                    raise ConfigError(f"larger than {MAX_FILE_SIZE >> 20} MiB; not a profile",
                                      origin=path)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", origin=path) from None
    doc = parse_bytes(b"".join(chunks), path)
    if cache is not None and key is not None:
        cache.put(path, key, doc)
    return doc


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
        import re

        message = str(exc)
        match = re.search(_POSITION, message)
        where = source
        if match is not None:
            message = message[:match.start()]
            if match.group(1):
                where = f"{source}:{match.group(1)}:{match.group(2)}"
        raise ConfigError(f"TOML syntax error: {message}", origin=where) from None
    except RecursionError:
        raise ConfigError("TOML syntax error: arrays or tables nested too deeply",
                          origin=source) from None


def expand_document(doc: Any, variables: dict[str, str], origin: str, key: str = "") -> Any:
    """Expand ${VARS} in every string of doc except literal keys' values."""
    if isinstance(doc, str):
        return doc if key in LITERAL_KEYS else expand(doc, variables, origin)
    if isinstance(doc, list):
        return [expand_document(v, variables, f"{origin}[{i}]", key) for i, v in enumerate(doc)]
    if isinstance(doc, dict):
        return {k: expand_document(v, variables, f"{origin}.{schema.key_part(k)}", k)
                for k, v in doc.items()}
    return doc


def load_file(path: str, variables: dict[str, str],
              cache: "ParseCache | None" = None) -> dict[str, Any]:
    """One profile file: parsed, checked and expanded (its `extends` too)."""
    doc = parse_file(path, cache)
    schema.check_structure(doc, path)
    scoped = dict(variables, PROFILE_DIR=os.path.dirname(os.path.realpath(path)))
    expanded = {k: expand_document(v, scoped, f"{path}: {k}", k) for k, v in doc.items()}
    schema.check_values(expanded, path)
    return expanded


#: How deep `extends` may nest (a profile extending one extending one ...): far more
#: than any real layering needs, and well inside Python's recursion limit.
MAX_EXTENDS_DEPTH = 64


def load_layers(ref: str, env: dict[str, str], variables: dict[str, str],
                use_cache: bool = False) -> list[Layer]:
    """The profile and everything it extends, base first, each file once.

    use_cache: keep parsed files in the per-user parse cache (`jailpy run`)."""
    cache = None
    if use_cache:
        from .cache import ParseCache, enabled

        cache = ParseCache(env) if enabled(env) else None
    layers: list[Layer] = []
    try:
        _load(ref, env, variables, layers, set(), (), None, None, None, cache)
    finally:
        if cache is not None:
            cache.save()
    return layers


def _load(ref: str, env: dict[str, str], variables: dict[str, str], layers: list[Layer],
          seen: set[str], chain: tuple[str, ...], relative_to: str | None,
          origin: str | None, extender: str | None, cache: "ParseCache | None") -> None:
    path = locate(ref, env, relative_to, origin, extender)
    key = os.path.realpath(path)
    if key in chain:
        cycle = " -> ".join([*chain[chain.index(key):], key])
        raise ConfigError(f"profiles extend each other in a cycle: {cycle}",
                          origin=origin or str(path))
    if key in seen:  # diamond: a base already applied is not applied again
        return
    if len(chain) >= MAX_EXTENDS_DEPTH:
        shown = [*chain[:3], "...", *chain[-2:], key]
        raise ConfigError(f"profiles extend each other more than {MAX_EXTENDS_DEPTH} deep: "
                          + " -> ".join(shown), origin=origin or str(path),
                          hint="flatten the chain: a profile may extend several at once")
    doc = load_file(path, variables, cache)
    for i, parent in enumerate(doc.get("extends", [])):
        _load(parent, env, variables, layers, seen, (*chain, key), os.path.dirname(path),
              f"{path}: extends[{i}]", path, cache)
    seen.add(key)
    layers.append(Layer({k: v for k, v in doc.items() if k != "extends"}, path))
