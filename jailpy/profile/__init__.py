"""Profiles: TOML files -> validated, layered, expanded -> Policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..policy import Policy
    from .loader import Layer
    from .merge import Merged

DEFAULT_PROFILE = "default"


def resolve(ref: str | None, env: dict[str, str], uid: int, gid: int, cwd: str | None,
            overrides: "Layer | None" = None) -> "Merged":
    """Load profile `ref` (default: the shipped 'default') and its bases, layer
    the overrides on top, and merge."""
    from .expand import standard_variables
    from .loader import load_layers, merge

    variables = standard_variables(env, uid, gid, cwd)
    layers = load_layers(ref or DEFAULT_PROFILE, env, variables)
    if overrides is not None:
        layers.append(overrides)
    return merge(layers)


def resolve_policy(ref: str | None, env: dict[str, str], uid: int, gid: int, cwd: str | None,
                   overrides: "Layer | None" = None) -> "Policy":
    """resolve(), then convert the merged document into a Policy."""
    from .convert import to_policy

    merged = resolve(ref, env, uid, gid, cwd, overrides)
    return to_policy(merged, Path(ref).stem if ref else DEFAULT_PROFILE)
