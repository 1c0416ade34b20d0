"""Profiles: TOML files -> validated, layered, expanded -> Policy."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from ..policy import Policy
    from .merge import Layer
    from .merge import Merged

DEFAULT_PROFILE = "default"


def resolve(ref: str | None, env: dict[str, str], uid: int, gid: int, cwd: str | None,
            overrides: "Layer | None" = None, use_cache: bool = False) -> "Merged":
    """Load profile `ref` (default: the shipped 'default') and its bases, layer
    the overrides on top, and merge. use_cache: see profile/cache.py."""
    from .expand import standard_variables
    from .loader import load_layers, merge

    variables = standard_variables(env, uid, gid, cwd)
    layers = load_layers(ref or DEFAULT_PROFILE, env, variables, use_cache)
    if overrides is not None:
        layers.append(overrides)
    return merge(layers)


def resolve_policy(ref: str | None, env: dict[str, str], uid: int, gid: int, cwd: str | None,
                   overrides: "Layer | None" = None, use_cache: bool = False) -> "Policy":
    """resolve(), then convert the merged document into a Policy."""
    from .convert import to_policy

    merged = resolve(ref, env, uid, gid, cwd, overrides, use_cache)
    name = os.path.splitext(os.path.basename(ref))[0] if ref else DEFAULT_PROFILE
    return to_policy(merged, name)
