"""jailpy: a rootless Linux sandbox with TOML profiles.

The public API is loaded lazily so `jailpy --help` and the CLI's start-up do
not pay for modules they do not use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Sandbox", "Pool", "Result", "Policy", "load_policy", "run", "__version__"]


def __getattr__(name: str):
    if name in ("Sandbox", "Pool", "Result", "load_policy", "run"):
        from . import api

        return getattr(api, name)
    if name == "Policy":
        from .policy import Policy

        return Policy
    raise AttributeError(f"module 'jailpy' has no attribute {name!r}")
