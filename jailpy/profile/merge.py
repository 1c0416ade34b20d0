"""Layering: merge profile layers (base first) into one document with origins.

Merge rules (also in jailpy-profile(5) and docs/profiles.md):

- scalars: the later layer wins;
- arrays: the later layer's items are appended to the inherited ones;
- tables (environment.set): merged entry by entry, the later layer wins;
- `reset = ["section.key", ...]`: the inherited value of those keys is
  discarded before this layer's own values are applied;
- `filesystem.remove = [DEST, ...]`: inherited mount ops with that
  destination are dropped before this layer's own mounts are appended; a
  destination that matches no inherited op is an error (a typo there would
  silently keep a mount the author meant to remove).

Every value remembers where it came from (a file, or a CLI option), for error
messages, `--explain` and `jailpy profile show --origins`.
"""

from __future__ import annotations


from ..errors import ConfigError
from ..policy import Origins
from . import schema
from .values import normalize_path

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any

#: Keys handled by the merge itself rather than merged as data.
DIRECTIVES = ("extends", "reset")


class Layer:
    """One document to merge: a profile file or the CLI overrides.

    item_origins gives origins of values: for an array key, one per item; for
    other keys, one item. Default: "<source>: key[i]" for array items,
    "<source>" for the rest. (A plain class: see schema.Field.)"""

    __slots__ = ("doc", "source", "item_origins")

    def __init__(self, doc: dict[str, Any], source: str,
                 item_origins: dict[str, list[str]] | None = None):
        self.doc = doc
        self.source = source
        self.item_origins = item_origins if item_origins is not None else {}

    def __repr__(self) -> str:
        return f"Layer(source={self.source!r})"


class Merged:
    """The merged document, the Origins of every value in it, and the layers
    it came from (sources, base first). (A plain class: see schema.Field.)
    """

    __slots__ = ("data", "origins", "sources")

    def __init__(self, data: dict[str, Any], origins: dict[str, Any],
                 sources: list[str] | None = None):
        self.data = data
        self.origins = Origins(origins)
        self.sources = sources if sources is not None else []


def merge(layers: list["Layer"]) -> Merged:
    merged = Merged({}, {})
    for layer in layers:
        merged.sources.append(layer.source)
        for path in layer.doc.get("reset", []):
            _reset(merged, path)
        removals = layer.doc.get("filesystem", {}).get("remove", [])
        if removals:
            _remove_mounts(merged, removals, layer)
        for key, value in layer.doc.items():
            if key in DIRECTIVES:
                continue
            if isinstance(schema.SCHEMA.get(key), dict):
                section = merged.data.setdefault(key, {})
                for sub, subvalue in value.items():
                    if f"{key}.{sub}" != "filesystem.remove":
                        _merge_key(section, merged.origins, layer, f"{key}.{sub}", sub, subvalue)
            else:
                merged.data[key] = value
                merged.origins[key] = layer.source
    merged.data = {k: v for k, v in merged.data.items() if v != {}}
    return merged


def _merge_key(section: dict, origins: dict, layer: "Layer", path: str, key: str,
               value: Any) -> None:
    given = layer.item_origins.get(path)
    if isinstance(value, list):
        section[key] = section.get(key, []) + value
        new = given or [f"{layer.source}: {path}[{i}]" for i in range(len(value))]
        origins[path] = origins.get(path, []) + list(new)
    elif isinstance(value, dict):
        section.setdefault(key, {}).update(value)
        for name in value:
            origins[f"{path}.{name}"] = given[0] if given else layer.source
    else:
        section[key] = value
        origins[path] = given[0] if given else layer.source


def _reset(merged: Merged, path: str) -> None:
    section, _, key = path.partition(".")
    merged.data.get(section, {}).pop(key, None)
    prefix = path + "."
    for name in [n for n in merged.origins if n == path or n.startswith(prefix)]:
        del merged.origins[name]


def mount_dest(entry: dict[str, Any]) -> str:
    """The destination of a (validated) mount table, normalized."""
    kind, optional = schema.mount_kind(entry, "mount")
    dest = entry["dest"] if "dest" in entry else entry[kind + "-try" if optional else kind]
    return normalize_path(dest)


def _remove_mounts(merged: Merged, removals: list[str], layer: "Layer") -> None:
    mounts = merged.data.get("filesystem", {}).get("mounts", [])
    mount_origins = merged.origins.get("filesystem.mounts", [])
    dests = [mount_dest(m) for m in mounts]
    for i, dest in enumerate(removals):
        if normalize_path(dest) not in dests:
            raise ConfigError(f"no inherited mount op has destination {dest!r}",
                              origin=f"{layer.source}: filesystem.remove[{i}]",
                              hint="see the inherited ops with 'jailpy profile show NAME'")
    removed = {normalize_path(d) for d in removals}
    keep = [i for i, dest in enumerate(dests) if dest not in removed]
    merged.data["filesystem"]["mounts"] = [mounts[i] for i in keep]
    merged.origins["filesystem.mounts"] = [mount_origins[i] for i in keep
                                           if i < len(mount_origins)]
