"""[changes] of a merged profile -> the Changes policy (docs/overlays.md)."""

from __future__ import annotations

from ..errors import ConfigError
from ..policy import Changes
from .values import normalize_path, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .merge import Merged


def changes_policy(merged: "Merged") -> Changes:
    data, origins = merged.data.get("changes", {}), merged.origins
    if data.get("enabled") and merged.data.get("namespaces", {}).get("mount") is False:
        raise ConfigError("changes need a mount namespace, but namespaces.mount = false",
                          origin=origins.of("changes.enabled"))
    size = data.get("size")
    return Changes(
        enabled=bool(data.get("enabled", False)),
        paths=tuple(normalize_path(p) for p in data.get("paths", ())),
        dir=data.get("dir"),
        size=None if size is None else parse_size(size, origins.of("changes.size")),
        review=bool(data.get("review", False)),
        origins=origins.within("changes", data))
