"""The profile schema: which keys exist, what type each has, and validation.

The schema is data (SCHEMA below), so the validator, `jailpy profile show`,
the man-page drift test and did-you-mean suggestions all read one source.
Validation runs on each file before layering, so every error can name the
file and the exact key path that is wrong.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from ..policy import BIND_KINDS, MOUNT_KINDS


@dataclass(frozen=True)
class Field:
    """One key: its type name (for messages), a checker, and its documentation."""

    type_name: str
    check: Callable[[Any], bool]
    doc: str = ""
    supported: bool = True


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_id(v: Any) -> bool:
    return _is_int(v) and 0 <= v < 2**32 - 1


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_port_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) and 0 < x < 65536 for x in v)


def _is_str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


def _is_size(v: Any) -> bool:
    return _is_int(v) or isinstance(v, str)


def _is_mount_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


STR = ("string", _is_str)
BOOL = ("boolean", _is_bool)
ID = ("integer id (0..4294967294)", _is_id)
INT = ("integer", _is_int)
STRS = ("array of strings", _is_str_list)
PORTS = ("array of port numbers (1..65535)", _is_port_list)
STRMAP = ("table of strings", _is_str_map)
SIZE = ("size (bytes as integer, or a string like \"64M\")", _is_size)
DURATION = ("duration (seconds as number, or a string like \"10m\")",
            lambda v: _is_int(v) or isinstance(v, (float, str)) and not isinstance(v, bool))
MOUNTS = ("array of mount tables", _is_mount_list)
NUMBER = ("number", lambda v: _is_int(v) or isinstance(v, float))
RLIMITS = ("table of limits (N, \"SOFT:HARD\" or [soft, hard])",
           lambda v: isinstance(v, dict) and all(
               _is_int(x) or isinstance(x, (str, list)) for x in v.values()))


def _f(kind: tuple[str, Callable[[Any], bool]], doc: str, supported: bool = True) -> Field:
    return Field(kind[0], kind[1], doc, supported)


#: Every section and key a profile may contain.
SCHEMA: dict[str, dict[str, Field] | Field] = {
    "description": _f(STR, "One line describing the profile, shown by 'jailpy profile list'."),
    "extends": _f(STRS, "Profiles (names or paths) this one is layered on, in order."),
    "namespaces": {
        name: _f(BOOL, f"Create a new {name} namespace (true) or share the host's (false).")
        for name in ("user", "mount", "pid", "ipc", "uts", "net", "cgroup")
    },
    "identity": {
        "uid": _f(ID, "User id inside the sandbox; default: the caller's."),
        "gid": _f(ID, "Group id inside the sandbox; default: the caller's."),
        "map_all": _f(BOOL, "Map the caller's whole subordinate range (newuidmap/newgidmap)."),
    },
    "filesystem": {
        "root_readonly": _f(BOOL, "Make the sandbox root tmpfs read-only after all ops."),
        "mounts": _f(MOUNTS, "Ordered filesystem operations; later ones go over earlier ones."),
        "remove": _f(STRS, "Destinations whose inherited mount ops are dropped."),
    },
    "environment": {
        "clear": _f(BOOL, "Start from an empty environment instead of the caller's."),
        "keep": _f(STRS, "Variables (names or globs like LC_*) kept from the caller."),
        "set": _f(STRMAP, "Variables set inside, after keep and unset."),
        "unset": _f(STRS, "Variables removed."),
    },
    "process": {
        "hostname": _f(STR, "Hostname inside (needs the uts namespace)."),
        "cwd": _f(STR, "Working directory inside; default: the caller's when visible, else /."),
        "argv0": _f(STR, "argv[0] given to the command."),
        "new_session": _f(BOOL, "Run the command in a new session (blocks TIOCSTI injection)."),
        "die_with_parent": _f(BOOL, "Kill the whole sandbox when jailpy dies."),
    },
    "capabilities": {
        "keep": _f(STRS, "Capabilities (CAP_*) kept inside the user namespace."),
    },
    "seccomp": {
        "enabled": _f(BOOL, "Install a seccomp filter (default true)."),
        "default_action": _f(STR, "\"allow\": deny-list mode (default); \"deny\": allow-list."),
        "deny": _f(STRS, "Syscalls and @groups refused (deny-list: in addition to @default)."),
        "allow": _f(STRS, "Syscalls and @groups allowed (allow-list), or exceptions (deny-list)."),
        "action": _f(STR, "What a refused call gets: errno[:NAME] (EPERM), kill-process, "
                     "kill-thread, trap, log."),
        "actions": _f(STRMAP, "Per-syscall or per-@group action overrides."),
        "allow_userns": _f(BOOL, "Allow creating user namespaces inside (default false)."),
        "block_tty_injection": _f(BOOL, "Refuse the TIOCSTI and TIOCLINUX ioctls (default true)."),
        "bad_arch_action": _f(STR, "Action for foreign ABIs (i386, x32): default kill-process."),
    },
    "landlock": {
        "enabled": _f(BOOL, "Restrict file access with Landlock (default true)."),
        "best_effort": _f(BOOL, "Run without what the kernel's Landlock ABI lacks."),
        "from_mounts": _f(BOOL, "Derive filesystem rules from the mount plan (default true)."),
        "read": _f(STRS, "Paths inside the sandbox readable beneath."),
        "write": _f(STRS, "Paths inside the sandbox readable and writable beneath."),
        "execute": _f(STRS, "Paths inside the sandbox readable and executable beneath."),
        "connect_tcp": _f(PORTS, "TCP ports connect() may reach; unset: unrestricted."),
        "bind_tcp": _f(PORTS, "TCP ports bind() may use; unset: unrestricted."),
        "scope_signals": _f(BOOL, "Refuse signals to processes outside the sandbox."),
        "scope_abstract_unix": _f(BOOL, "Refuse connecting to abstract unix sockets "
                                  "outside the sandbox."),
    },
    "network": {
        "mode": _f(STR, "none, host, slirp4netns or pasta."),
    },
    "limits": {
        "rlimits": _f(RLIMITS, "rlimits by name (as, data, nofile, nproc, cpu, fsize, core, "
                      "stack, memlock): N, \"SOFT:HARD\" or \"unlimited\"; sizes take units."),
        "timeout": _f(DURATION, "Wall-clock limit: SIGTERM, then SIGKILL after kill_grace; "
                      "exit status 124."),
        "kill_grace": _f(DURATION, "Time between the timeout's SIGTERM and SIGKILL (default 5s)."),
        "memory_max": _f(SIZE, "cgroup memory limit; the OOM killer ends the sandbox above it."),
        "memory_swap_max": _f(SIZE, "cgroup swap limit (default 0 when memory_max is set)."),
        "pids_max": _f(INT, "cgroup limit on processes and threads in the sandbox."),
        "cpus": _f(NUMBER, "cgroup CPU bandwidth in CPUs (e.g. 0.5 or 2)."),
        "cpu_period": _f(DURATION, "cgroup CPU bandwidth period (default 100ms)."),
        "cgroup_parent": _f(STR, "Delegated cgroup under which each sandbox gets its own "
                            "(default: $JAILPY_CGROUP_PARENT, else found; see jailpy check)."),
        "best_effort": _f(BOOL, "Run anyway when a cgroup limit cannot be applied."),
    },
    "workspace": {
        "path": _f(STR, "Directory bound read-write and used as the working directory; "
                   "must not be / or contain the home directory."),
    },
    "desktop": {
        "x11": _f(BOOL, "Pass the X11 display in $DISPLAY through: its socket and its cookie."),
        "x11_untrusted": _f(BOOL, "Pass X11 with an untrusted cookie (X SECURITY extension)."),
        "wayland": _f(BOOL, "Pass the Wayland compositor socket through."),
        "pulseaudio": _f(BOOL, "Pass the PulseAudio socket (pulse/native) and cookie through."),
        "pipewire": _f(BOOL, "Pass the PipeWire socket (pipewire-0) through."),
        "gpu": _f(BOOL, "Bind /dev/dri and /dev/nvidia* devices."),
        "dbus": _f(BOOL, "Session bus through a filtering xdg-dbus-proxy (deny by default)."),
        "dbus_see": _f(STRS, "Session bus names the sandbox may see."),
        "dbus_talk": _f(STRS, "Session bus names the sandbox may call."),
        "dbus_own": _f(STRS, "Session bus names the sandbox may own."),
        "dbus_call": _f(STRS, "Session bus call rules NAME=[METHOD][@PATH]."),
        "dbus_broadcast": _f(STRS, "Session bus broadcast rules NAME=[METHOD][@PATH]."),
        "dbus_system": _f(STR, "System bus: none or filtered."),
        "dbus_system_see": _f(STRS, "System bus names the sandbox may see."),
        "dbus_system_talk": _f(STRS, "System bus names the sandbox may call."),
        "dbus_system_call": _f(STRS, "System bus call rules NAME=[METHOD][@PATH]."),
        "dbus_system_broadcast": _f(STRS, "System bus broadcast rules NAME=[METHOD][@PATH]."),
        "fonts": _f(BOOL, "Font directories and fontconfig, read-only."),
        "themes": _f(BOOL, "Icon, cursor and GTK/Qt theme directories, read-only."),
        "locale": _f(BOOL, "Locale and time zone data, read-only; LANG, LC_* and TZ kept."),
        "user_dirs": _f(STRMAP, "XDG user dirs (downloads, documents, ...) -> rw, ro or none."),
        "app_dirs": _f(STRS, "The app's own state dirs: read-write, created when missing."),
        "optional": _f(STRS, "Pieces skipped instead of failing when missing on this machine."),
    },
}

#: Keys of one mount table, by op kind: the kind key itself plus these.
MOUNT_KEYS: dict[str, tuple[str, ...]] = {
    **{kind: ("dest", "optional") for kind in BIND_KINDS},
    "tmpfs": ("size", "mode"), "proc": (), "dev": (), "mqueue": (),
    "symlink": ("dest",), "dir": ("mode",), "file": ("content", "mode"),
    "remount-ro": (), "chmod": ("mode",),
}
assert set(MOUNT_KEYS) == set(MOUNT_KINDS)

#: Values the network mode accepts.
NETWORK_MODES = ("none", "host", "slirp4netns", "pasta")


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _unknown(key: str, choices, origin: str) -> ConfigError:
    return ConfigError(f"unknown key '{key}'", origin=origin, hint=suggest(key, choices))


def validate_document(doc: dict[str, Any], source: str) -> None:
    """Check one parsed TOML file against SCHEMA; raise on the first problem."""
    for key, value in doc.items():
        spec = SCHEMA.get(key)
        if spec is None:
            raise _unknown(key, list(SCHEMA), f"{source}: {key}")
        if isinstance(spec, Field):
            _check_field(spec, value, f"{source}: {key}")
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {_type_of(value)}", origin=f"{source}: {key}")
        for sub, subvalue in value.items():
            origin = f"{source}: {key}.{sub}"
            field = spec.get(sub)
            if field is None:
                raise _unknown(sub, list(spec), origin)
            _check_field(field, subvalue, origin)
            if not field.supported:
                raise ConfigError("not supported yet", origin=origin,
                                  hint="this key is planned; remove it to run this profile")
    _check_values(doc, source)


def _check_field(field: Field, value: Any, origin: str) -> None:
    if not field.check(value):
        raise ConfigError(f"expected {field.type_name}, got {_type_of(value)}", origin=origin)


def _type_of(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _check_values(doc: dict[str, Any], source: str) -> None:
    """Checks beyond types: mount tables, absolute paths, enumerations."""
    fs = doc.get("filesystem", {})
    for i, entry in enumerate(fs.get("mounts", [])):
        validate_mount(entry, f"{source}: filesystem.mounts[{i}]")
    for i, path in enumerate(fs.get("remove", [])):
        _require_absolute(path, f"{source}: filesystem.remove[{i}]")
    mode = doc.get("network", {}).get("mode")
    if mode is not None and mode not in NETWORK_MODES:
        raise ConfigError(f"unknown network mode {mode!r}", origin=f"{source}: network.mode",
                          hint=suggest(mode, NETWORK_MODES) or
                          f"choose one of {', '.join(NETWORK_MODES)}")
    cwd = doc.get("process", {}).get("cwd")
    if cwd is not None:
        _require_absolute(cwd, f"{source}: process.cwd")
    if "desktop" in doc:
        from ..desktop.config import check_section

        check_section(doc["desktop"], f"{source}: desktop")
    from .security import check_values as _check_security

    _check_security(doc, source)


def mount_kind(entry: dict[str, Any], origin: str) -> tuple[str, bool]:
    """The op kind of a mount table and whether it is a -try form."""
    kinds = [k for k in entry if k in MOUNT_KEYS or
             (k.endswith("-try") and k[:-4] in BIND_KINDS)]
    if len(kinds) != 1:
        found = "none" if not kinds else ", ".join(kinds)
        raise ConfigError(f"a mount table needs exactly one op key ({', '.join(MOUNT_KINDS)}); "
                          f"found {found}", origin=origin)
    kind = kinds[0]
    return (kind[:-4], True) if kind.endswith("-try") else (kind, False)


def validate_mount(entry: dict[str, Any], origin: str) -> None:
    for key in entry:
        if key not in MOUNT_KEYS and not (key.endswith("-try") and key[:-4] in BIND_KINDS) \
                and key not in ("dest", "optional", "size", "mode", "content"):
            choices = [*MOUNT_KEYS, "dest", "optional", "size", "mode", "content"]
            raise _unknown(key, choices, f"{origin}.{key}")
    kind, _ = mount_kind(entry, origin)
    allowed = set(MOUNT_KEYS[kind]) | {kind, kind + "-try"}
    for key, value in entry.items():
        if key not in allowed:
            raise ConfigError(f"'{key}' does not apply to a {kind} op", origin=f"{origin}.{key}")
        if key == "optional" and not isinstance(value, bool):
            raise ConfigError(f"expected boolean, got {_type_of(value)}", origin=f"{origin}.{key}")
        if key == "size" and not _is_size(value):
            raise ConfigError(f"expected {SIZE[0]}", origin=f"{origin}.{key}")
        if key == "mode" and not (isinstance(value, str) or _is_int(value)):
            raise ConfigError("expected an octal mode string like \"0755\"",
                              origin=f"{origin}.{key}")
        if key in ("dest", "content") or key == kind or key == kind + "-try":
            if not isinstance(value, str):
                raise ConfigError(f"expected string, got {_type_of(value)}",
                                  origin=f"{origin}.{key}")
    if kind == "symlink" and "dest" not in entry:
        raise ConfigError("a symlink op needs 'dest' (the link) besides its target",
                          origin=origin)
    if kind == "chmod" and "mode" not in entry:
        raise ConfigError("a chmod op needs 'mode'", origin=origin)


def _require_absolute(path: str, origin: str) -> None:
    if not path.startswith("/") and not path.startswith("${"):
        raise ConfigError(f"path must be absolute: {path!r}", origin=origin)
