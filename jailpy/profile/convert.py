"""Merged profile data -> Policy, with value parsing (sizes, modes, durations)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..policy import (BIND_KINDS, Capabilities, Environment, Filesystem, Identity, MountOp,
                      Namespaces, Network, Policy, Process)
from . import schema, security
from .loader import Merged

_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: int | str, origin: str) -> int:
    """Bytes from 123, "64M", "2G", "512k" (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError("size must not be negative", origin=origin)
        return value
    text = str(value).strip()
    number = text.rstrip("bBkKmMgGtTiI")
    unit = text[len(number):].upper().replace("I", "").rstrip("B") or ""
    if unit not in _SIZE_UNITS or not number or not number.replace(".", "", 1).isdigit():
        raise ConfigError(f"bad size {value!r}", origin=origin,
                          hint="use bytes or a number with K, M, G or T (e.g. \"64M\")")
    return int(float(number) * _SIZE_UNITS[unit])


def parse_duration(value: int | float | str, origin: str) -> float:
    """Seconds from 30, 1.5, "10m", "250ms", "2h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        number = text.rstrip("smhd")
        unit = text[len(number):]
        try:
            seconds = float(number) * _DURATION_UNITS[unit]
        except (KeyError, ValueError):
            raise ConfigError(f"bad duration {value!r}", origin=origin,
                              hint="use seconds or a number with ms, s, m, h or d "
                              "(e.g. \"10m\")") from None
    if seconds <= 0 or seconds != seconds:
        raise ConfigError(f"duration must be positive: {value!r}", origin=origin)
    return seconds


def parse_mode(value: int | str, origin: str) -> int:
    """File mode from an octal string ("0755", "1777") or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ConfigError(f"bad mode {value!r}: expected octal like \"0755\"",
                              origin=origin) from None
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"mode out of range: {value!r}", origin=origin)
    return mode


def mount_op(entry: dict[str, Any], origin: str) -> MountOp:
    """One validated mount table -> MountOp."""
    kind, is_try = schema.mount_kind(entry, origin)
    value = entry[kind + "-try" if is_try else kind]
    if kind in BIND_KINDS:
        source, dest = value, entry.get("dest", value)
    elif kind == "symlink":
        source, dest = value, entry["dest"]
    else:
        source, dest = None, value
    if kind in BIND_KINDS and not source.startswith("/"):
        raise ConfigError(f"source must be an absolute path: {source!r}", origin=origin)
    if not dest.startswith("/"):
        raise ConfigError(f"destination must be an absolute path: {dest!r}", origin=origin)
    mode = parse_mode(entry["mode"], f"{origin}.mode") if "mode" in entry else None
    size = parse_size(entry["size"], f"{origin}.size") if "size" in entry else None
    return MountOp(kind=kind, dest=_normalize(dest), source=source,
                   optional=is_try or bool(entry.get("optional", False)), mode=mode, size=size,
                   content=entry.get("content"), origin=origin)


def _normalize(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def to_policy(merged: Merged, name: str) -> Policy:
    data, origins = merged.data, merged.origins
    section = lambda key: data.get(key, {})  # noqa: E731
    fs = section("filesystem")
    mount_origins = origins.get("filesystem.mounts", [])
    ops = tuple(mount_op(entry, mount_origins[i] if i < len(mount_origins) else f"mounts[{i}]")
                for i, entry in enumerate(fs.get("mounts", [])))
    env = section("environment")
    proc = section("process")
    ns = Namespaces(**section("namespaces"))
    net = section("network")
    mode = net.get("mode", "none")
    if mode == "host" and ns.net:
        ns = Namespaces(**{**ns.__dict__, "net": False})
    elif mode != "host" and not ns.net and "mode" in net:
        raise ConfigError(f"network.mode = {mode!r} needs its own network namespace, but "
                          "namespaces.net = false", origin=origins.get("network.mode", "network"))
    if mode in ("slirp4netns", "pasta"):
        raise ConfigError(f"network mode {mode!r} is not supported yet",
                          origin=origins.get("network.mode", "network.mode"))
    if ops and not ns.mount:
        raise ConfigError("filesystem ops need a mount namespace, but namespaces.mount = false",
                          origin=origins.get("namespaces.mount", "namespaces.mount"))
    return Policy(
        namespaces=ns,
        identity=Identity(**section("identity")),
        filesystem=Filesystem(ops=ops, root_readonly=fs.get("root_readonly", True)),
        environment=Environment(clear=env.get("clear", True), keep=tuple(env.get("keep", ())),
                                set=tuple(env.get("set", {}).items()),
                                unset=tuple(env.get("unset", ()))),
        process=Process(hostname=proc.get("hostname"), cwd=proc.get("cwd"),
                        argv0=proc.get("argv0"), new_session=proc.get("new_session", True),
                        die_with_parent=proc.get("die_with_parent", True)),
        capabilities=Capabilities(keep=security.capability_names(data)),
        seccomp=security.seccomp_policy(data, origins),
        landlock=security.landlock_policy(data, origins),
        network=Network(mode=mode),
        desktop=_desktop(section("desktop"), origins, ns.mount),
        **_limits_and_workspace(merged),
        name=name,
    )


def _desktop(section: dict[str, Any], origins: dict[str, Any], mount_ns: bool):
    """The [desktop] section (jailpy/desktop/config.py); off unless a key turns it on."""
    if not section:
        from ..policy import Desktop

        return Desktop()
    from ..desktop.config import to_desktop

    desktop = to_desktop(section, origins)
    if desktop.enabled and not mount_ns:
        raise ConfigError("desktop pieces need a mount namespace, but namespaces.mount = false",
                          origin=origins.get("namespaces.mount", "namespaces.mount"))
    return desktop


def _limits_and_workspace(merged: Merged) -> dict:
    """[limits] and [workspace] (profile/limits.py), imported only when present."""
    if "limits" not in merged.data and "workspace" not in merged.data:
        return {}
    from .limits import limits_policy, workspace_policy

    return {"limits": limits_policy(merged), "workspace": workspace_policy(merged)}
