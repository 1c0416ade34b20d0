"""Profiles: TOML in, Policy out.

    loader   find a profile, parse (cache), check (schema), expand ${VARS} (expand)
    merge    layer the files and the CLI layer into one document with its Origins
    convert  the merged document -> Policy, one file per section feeding it:
             security.py limits.py network.py desktop.py (values.py: sizes, modes)
    commands `jailpy profile list/show/check`, writing TOML back with emit.py
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from ..policy import Caller, Policy
    from .merge import Layer
    from .merge import Merged

DEFAULT_PROFILE = "default"


def resolve(ref: str | None, caller: "Caller", overrides: "Layer | None" = None,
            use_cache: bool = False) -> "Merged":
    """Load profile `ref` (default: the shipped 'default') and its bases, layer
    the overrides on top, and merge. use_cache: see profile/cache.py."""
    from .expand import standard_variables
    from .loader import load_layers, merge

    layers = load_layers(DEFAULT_PROFILE if ref is None else ref, caller.env,
                         standard_variables(caller), use_cache)
    if overrides is not None:
        layers.append(overrides)
    return merge(layers)


def resolve_policy(ref: str | None, caller: "Caller", overrides: "Layer | None" = None,
                   use_cache: bool = False) -> "Policy":
    """resolve(), then convert the merged document into a Policy."""
    from .convert import to_policy

    merged = resolve(ref, caller, overrides, use_cache)
    name = os.path.splitext(os.path.basename(ref))[0] if ref else DEFAULT_PROFILE
    return to_policy(merged, name)
