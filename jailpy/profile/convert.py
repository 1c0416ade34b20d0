"""Merged profile data -> Policy, with value parsing (sizes, modes, durations).

Each section has its converter (security.py, limits.py, network.py,
desktop.py); every one names the origin of a value it refuses through the
merged document's Origins.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable

from ..errors import ConfigError
from .network import network_from_profile
from ..policy import (HELPER_MODES, MOUNT_TABLE, Capabilities, Environment, Filesystem,
                      Identity, MountOp, Namespaces, Network, Origins, Policy, Process)
from . import schema, security
from .merge import Merged
from .values import normalize_path, parse_mode, parse_size, require_absolute


def mount_op(entry: dict[str, Any], origin: str) -> MountOp:
    """One validated mount table -> MountOp: the op key's value is the source of
    a kind that has one (a bind's SRC, a symlink's target), else the destination."""
    kind, is_try = schema.mount_kind(entry, origin)
    value = entry[kind + "-try" if is_try else kind]
    if MOUNT_TABLE[kind].source:
        source, dest = value, entry.get("dest", value)
    else:
        source, dest = None, value
    mode = parse_mode(entry["mode"], f"{origin}.mode") if "mode" in entry else None
    size = parse_size(entry["size"], f"{origin}.size") if "size" in entry else None
    if size == 0:  # the kernel reads size=0 as "no limit"
        raise ConfigError("a tmpfs size of 0 means no limit to the kernel",
                          origin=f"{origin}.size", hint="give a size like 64M")
    return MountOp(kind=kind, dest=normalize_path(require_absolute(dest, origin)),
                   source=source, optional=is_try or bool(entry.get("optional", False)),
                   mode=mode, size=size, content=entry.get("content"),
                   lower=tuple(entry.get("lower", ())), upper=entry.get("upper"),
                   work=entry.get("work"), origin=origin)


def _network_needs_netns(merged: Merged) -> None:
    data = merged.data
    mode = data.get("network", {}).get("mode")
    if mode not in (None, "host") and data.get("namespaces", {}).get("net") is False:
        raise ConfigError(
            f"mode {mode!r} needs its own network namespace, but namespaces.net = "
            f"false (from {merged.origins.of('namespaces.net')})",
            origin=merged.origins.of("network.mode"),
            hint="use network.mode = \"host\" (--net host) to share the host's network")


def _mounts_need_mountns(merged: Merged) -> None:
    data = merged.data
    if data.get("filesystem", {}).get("mounts") and \
            data.get("namespaces", {}).get("mount") is False:
        raise ConfigError(
            "filesystem ops need a mount namespace, but namespaces.mount = false "
            f"(from {merged.origins.of('namespaces.mount')})",
            origin=merged.origins.item("filesystem.mounts", 0),
            hint="remove the mounts (reset = [\"filesystem.mounts\"]) or keep the mount "
            "namespace")


def _map_all_without_network_helper(merged: Merged) -> None:
    """A network helper needs an outer user namespace mapping the caller to 0
    (docs/network.md); the full subordinate range would have to be mapped in
    that one too, which is not implemented: refuse rather than run with a
    half-applied identity."""
    data = merged.data
    mode = data.get("network", {}).get("mode")
    if mode in HELPER_MODES and data.get("identity", {}).get("map_all"):
        raise ConfigError(
            f"identity.map_all cannot be combined with network mode {mode!r} yet "
            f"(from {merged.origins.of('network.mode')})",
            origin=merged.origins.of("identity.map_all"),
            hint="drop --map-all, or use --net none/host")


#: Checks across keys and sections of the merged document: each raises
#: ConfigError naming the origins of both sides. Feature areas append theirs.
CONSTRAINTS: list[Callable[[Merged], None]] = [_network_needs_netns, _mounts_need_mountns,
                                               _map_all_without_network_helper]


def to_policy(merged: Merged, name: str) -> Policy:
    data, origins = merged.data, merged.origins
    section = lambda key: data.get(key, {})  # noqa: E731
    fs = section("filesystem")
    schema.check_mount_count(len(fs.get("mounts", [])), "filesystem.mounts (merged)")
    ops = tuple(mount_op(entry, origins.item("filesystem.mounts", i))
                for i, entry in enumerate(fs.get("mounts", [])))
    env = section("environment")
    proc = section("process")
    for constraint in CONSTRAINTS:
        constraint(merged)
    ns = Namespaces(**section("namespaces"))
    net = section("network")
    mode = net.get("mode", "none")
    if mode == "host" and ns.net:
        ns = Namespaces(**{**ns.__dict__, "net": False})
    return Policy(
        namespaces=ns,
        identity=Identity(**section("identity")),
        filesystem=Filesystem(ops=ops, root_readonly=fs.get("root_readonly", True)),
        environment=Environment(clear=env.get("clear", True), keep=tuple(env.get("keep", ())),
                                set=tuple(env.get("set", {}).items()),
                                unset=tuple(env.get("unset", ()))),
        process=Process(hostname=proc.get("hostname"), cwd=proc.get("cwd"),
                        argv0=proc.get("argv0"), new_session=proc.get("new_session", True),
                        tty=proc.get("tty"),
                        die_with_parent=proc.get("die_with_parent", True),
                        wait_all=proc.get("wait_all", False)),
        capabilities=Capabilities(keep=security.capability_names(data)),
        seccomp=security.seccomp_policy(data, origins),
        landlock=security.landlock_policy(data, origins),
        network=network_from_profile(net, origins) if net else Network(),
        desktop=_desktop(section("desktop"), origins, ns.mount),
        **_limits_and_workspace(merged),
        **_changes(merged),
        name=name,
    )


def _desktop(section: dict[str, Any], origins: Origins, mount_ns: bool):
    """The [desktop] section (profile/desktop.py); off unless a key turns it on."""
    if not section:
        from ..policy import Desktop

        return Desktop()
    from .desktop import to_desktop

    desktop = to_desktop(section, origins)
    if desktop.enabled and not mount_ns:
        raise ConfigError("desktop pieces need a mount namespace, but namespaces.mount = false",
                          origin=origins.of("namespaces.mount"))
    return desktop


def _changes(merged: Merged) -> dict:
    """[changes] (profile/changes.py), imported only when present."""
    if "changes" not in merged.data:
        return {}
    from .changes import changes_policy

    return {"changes": changes_policy(merged)}


def _limits_and_workspace(merged: Merged) -> dict:
    """[limits] and [workspace] (profile/limits.py), imported only when present."""
    if "limits" not in merged.data and "workspace" not in merged.data:
        return {}
    from .limits import limits_policy, workspace_policy

    return {"limits": limits_policy(merged), "workspace": workspace_policy(merged)}
