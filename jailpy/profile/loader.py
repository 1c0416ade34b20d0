"""Find, parse, expand and layer profiles.

Merge rules (documented in jailpy-profile(5) and docs/profiles.md):
- scalars: the later layer wins;
- arrays: the later layer's items are appended to the inherited ones;
- tables of strings (environment.set): merged key by key, later wins;
- filesystem.remove: drops inherited mount ops with that destination.

Each layer is validated and expanded on its own, before merging, so an error
names the file it is in and `${PROFILE_DIR}` means that file's directory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import schema
from .expand import expand

#: Keys whose strings are taken literally (no ${VAR} expansion).
_LITERAL_KEYS = {"description", "content"}


def shipped_profiles_dir() -> Path:
    """Profiles installed as package data, or the source tree's profiles/."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "profiles"
    return packaged if packaged.is_dir() else here.parent / "profiles"


def search_path(env: dict[str, str]) -> list[Path]:
    config = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "/"), ".config")
    return [Path(config) / "jailpy" / "profiles", Path("/etc/jailpy/profiles"),
            shipped_profiles_dir()]


def _is_path(ref: str) -> bool:
    return "/" in ref or ref.endswith(".toml")


def locate(ref: str, env: dict[str, str], relative_to: Path | None = None,
           origin: str | None = None) -> Path:
    """Resolve a profile name or path to a file."""
    if _is_path(ref):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"profile file not found: {ref}", origin=origin or "--profile")
        return path
    for directory in search_path(env):
        candidate = directory / f"{ref}.toml"
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue  # an unreadable search directory is as good as a missing one
    dirs = ", ".join(str(d) for d in search_path(env))
    names = sorted({p.stem for d in search_path(env) if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(f"no profile named '{ref}'", origin=origin or "--profile",
                      hint=schema.suggest(ref, names) or f"searched {dirs}")


def parse_file(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", origin=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", origin=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", origin=str(path)) from exc


@dataclass
class Layer:
    """One document to merge: a profile file or the CLI overrides."""

    doc: dict[str, Any]
    source: str
    #: For list keys: the origin of each item (CLI options); default "<source>: key[i]".
    item_origins: dict[str, list[str]] = field(default_factory=dict)


def expand_document(doc: Any, variables: dict[str, str], origin: str, key: str = "") -> Any:
    if isinstance(doc, str):
        return doc if key in _LITERAL_KEYS else expand(doc, variables, origin)
    if isinstance(doc, list):
        return [expand_document(v, variables, f"{origin}[{i}]", key) for i, v in enumerate(doc)]
    if isinstance(doc, dict):
        return {k: expand_document(v, variables, f"{origin}.{k}", k) for k, v in doc.items()}
    return doc


def load_layers(ref: str, env: dict[str, str], variables: dict[str, str],
                chain: tuple[str, ...] = (), relative_to: Path | None = None,
                origin: str | None = None) -> list[Layer]:
    """The profile and everything it extends, base first."""
    path = locate(ref, env, relative_to, origin)
    key = str(path.resolve())
    if key in chain:
        cycle = " -> ".join([*chain, key])
        raise ConfigError(f"profiles extend each other in a cycle: {cycle}", origin=str(path))
    doc = parse_file(path)
    schema.validate_document(doc, str(path))
    layers: list[Layer] = []
    for i, parent in enumerate(doc.get("extends", [])):
        layers += load_layers(parent, env, variables, (*chain, key), path.parent,
                              f"{path}: extends[{i}]")
    scoped = dict(variables, PROFILE_DIR=str(path.parent))
    expanded = {k: expand_document(v, scoped, f"{path}: {k}", k) for k, v in doc.items()}
    layers.append(Layer(expanded, str(path)))
    return layers


@dataclass
class Merged:
    data: dict[str, Any]
    origins: dict[str, Any]


def merge(layers: list[Layer]) -> Merged:
    data: dict[str, Any] = {}
    origins: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.doc.items():
            if key == "extends":
                continue
            if isinstance(schema.SCHEMA.get(key), dict):
                section = data.setdefault(key, {})
                for sub, subvalue in value.items():
                    _merge_key(section, origins, layer, f"{key}.{sub}", sub, subvalue)
            else:
                data[key] = value
                origins[key] = layer.source
    return Merged(data, origins)


def _merge_key(section: dict, origins: dict, layer: Layer, path: str, key: str,
               value: Any) -> None:
    if path == "filesystem.remove":
        removed = set(value)
        mounts = section.get("mounts", [])
        keep = [i for i, m in enumerate(mounts) if _mount_dest(m) not in removed]
        section["mounts"] = [mounts[i] for i in keep]
        origins["filesystem.mounts"] = [origins.get("filesystem.mounts", [])[i] for i in keep]
        return
    if isinstance(value, list):
        section[key] = section.get(key, []) + value
        given = layer.item_origins.get(path)
        start = len(origins.get(path, []))
        new = given or [f"{layer.source}: {path}[{start + i}]" for i in range(len(value))]
        origins[path] = origins.get(path, []) + new
    elif isinstance(value, dict):
        section.setdefault(key, {}).update(value)
        for name in value:
            origins[f"{path}.{name}"] = layer.source
    else:
        section[key] = value
        origins[path] = layer.item_origins.get(path, [layer.source])[0]


def _mount_dest(entry: dict[str, Any]) -> str | None:
    kind, optional = schema.mount_kind(entry, "mount")
    if "dest" in entry:
        return entry["dest"]
    return entry.get(kind + "-try" if optional else kind)
