"""Profiles: TOML files -> validated, layered, expanded -> Policy."""

from __future__ import annotations

from pathlib import Path

from ..policy import Policy
from .loader import Layer


def resolve_policy(ref: str | None, env: dict[str, str], uid: int, gid: int, cwd: str | None,
                   overrides: Layer | None = None) -> Policy:
    """Load profile `ref` (default: the shipped 'default'), layer overrides, convert."""
    from .convert import to_policy
    from .expand import standard_variables
    from .loader import load_layers, merge

    variables = standard_variables(env, uid, gid, cwd)
    layers = load_layers(ref or "default", env, variables)
    if overrides is not None:
        overrides.doc = {k: v for k, v in overrides.doc.items() if v}
        layers.append(overrides)
    name = Path(ref).stem if ref else "default"
    return to_policy(merge(layers), name)
