"""What `jailpy profile list|show|check` compute; the CLI only renders it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..policy import Caller, Policy
from . import loader


@dataclass(frozen=True)
class Entry:
    """One profile file found on the search path."""

    name: str
    path: str
    source: str                    # user, system or shipped
    description: str               # or a note when the file has none / is broken
    shadowed_by: str | None = None
    broken: bool = False


def list_profiles(env: dict[str, str]) -> list[Entry]:
    """Every profile on the search path, the one a name resolves to first."""
    entries: list[Entry] = []
    winner: dict[str, str] = {}
    for label, directory in loader.search_path(env):
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".toml"))
        except OSError:
            continue
        for file_name in names:
            path = os.path.join(directory, file_name)
            if not os.path.isfile(path):
                continue
            name = file_name[:-5]
            description, broken = _description(path)
            entries.append(Entry(name, path, label, description, winner.get(name), broken))
            winner.setdefault(name, path)
    return sorted(entries, key=lambda e: (e.name, e.shadowed_by is not None))


def _description(path: str) -> tuple[str, bool]:
    try:
        doc = loader.parse_file(path)
    except ConfigError as err:
        return f"(broken: {err.message})", True
    text = doc.get("description")
    if isinstance(text, str) and text:
        return text, False
    extends = doc.get("extends")
    if isinstance(extends, list) and extends:
        return f"(no description; extends {', '.join(map(str, extends))})", False
    return "(no description)", False


def escape_dollars(doc: Any, key: str = "") -> Any:
    """Write '$' as '$$' in expanded strings, so shown output loads back unchanged."""
    if isinstance(doc, str):
        return doc if key in loader.LITERAL_KEYS else doc.replace("$", "$$")
    if isinstance(doc, list):
        return [escape_dollars(v, key) for v in doc]
    if isinstance(doc, dict):
        return {k: escape_dollars(v, k) for k, v in doc.items()}
    return doc


def show(ref: str, caller: Caller, with_origins: bool = False) -> str:
    """The fully merged profile as TOML, optionally with each value's origin."""
    from . import resolve
    from .convert import to_policy
    from .emit import dumps

    merged = resolve(ref, caller)
    to_policy(merged, ref)  # a profile that cannot run is reported, not shown
    header = [f"jailpy profile {ref!r}: merged result, variables expanded",
              "layers, base first:", *(f"  {source}" for source in merged.sources)]

    comments = merged.origins.source if with_origins else None
    return dumps(escape_dollars(merged.data), comments, header)


def check(ref: str, caller: Caller) -> "Policy":
    """The profile checks of `jailpy run --profile ref` (the CLI adds the plan's and
    libseccomp's); raises, else returns the policy."""
    from . import resolve_policy

    return resolve_policy(ref if loader.is_path(ref) or not os.path.exists(ref)
                          else f"./{ref}", caller)
