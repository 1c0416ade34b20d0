"""The profile schema: which keys exist, what type each has, and validation.

The schema is data (SCHEMA below), so the validator, `jailpy profile show`,
the man-page drift test and did-you-mean suggestions all read one source.
Validation runs on each file before layering, so every error can name the
file and the exact key path that is wrong. It has two passes:

- structure (`check_structure`), before ${VAR} expansion: unknown keys, types;
- values (`check_values`), after expansion: absolute paths, sizes, durations,
  modes, enumerations -- things only the expanded text can answer.

A feature area adds keys by adding Fields to SCHEMA. A Field's `validate`
hook (value, origin) raises ConfigError for a bad value. The vocabularies
come from policy.py: the namespaces, the network modes, and the keys of a
filesystem.mounts table, which are those of the op's row in MOUNT_TABLE.
"""

from __future__ import annotations


from ..errors import ConfigError, suggest
from ..policy import MOUNT_KINDS, MOUNT_TABLE, NAMESPACES, NETWORK_MODES, SYSTEM_BUS_MODES
from .values import parse_duration, parse_mode, parse_size, require_absolute

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable

    Validator = Callable[[Any, str], None]


class Field:
    """One key: its type name (for messages), a type check, a value check, its docs.

    A plain class rather than a dataclass: defining a dataclass costs a
    noticeable part of a millisecond at import, on every `jailpy run`."""

    __slots__ = ("type_name", "check", "doc", "validate")

    def __init__(self, type_name: str, check: Callable[[Any], bool], doc: str = "",
                 validate: Validator | None = None):
        self.type_name = type_name
        self.check = check
        self.doc = doc
        self.validate = validate

    def __repr__(self) -> str:
        return f"Field({self.type_name!r})"


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


def _each(validate: Validator) -> Validator:
    """A validator for every item of an array, each with its index in the origin."""
    def check(values: Any, origin: str) -> None:
        for i, item in enumerate(values):
            validate(item, f"{origin}[{i}]")
    return check


def _discard(parse: Callable[[Any, str], Any]) -> Validator:
    def check(value: Any, origin: str) -> None:
        parse(value, origin)
    return check


def _no_nul(value: Any, origin: str) -> None:
    if "\0" in value:
        raise ConfigError("string contains a NUL byte", origin=origin)


def _env_name(name: Any, origin: str) -> None:
    if not name or "=" in name or "\0" in name:
        raise ConfigError(f"not a valid environment variable name: {name!r}", origin=origin)


def _env_table(table: Any, origin: str) -> None:
    for name, value in table.items():
        _env_name(name, f"{origin}.{key_part(name)}")
        _no_nul(value, f"{origin}.{key_part(name)}")


def _hostname(name: Any, origin: str) -> None:
    if not name.isprintable() or not 0 < len(name.encode(errors="replace")) <= 64 \
            or "/" in name or name.isspace():
        raise ConfigError(f"not a valid hostname: {name!r}", origin=origin,
                          hint="use 1 to 64 bytes of printable characters, no '/'")


def choice(noun: str, values: tuple[str, ...]) -> tuple[str, Callable[[Any], bool], Validator]:
    """A kind for strings from a fixed set ("unknown network mode 'slirp'"), with
    did-you-mean on a typo."""
    def validate(value: Any, origin: str) -> None:
        if value not in values:
            raise ConfigError(f"unknown {noun} {value!r}", origin=origin,
                              hint=suggest(value, values) or f"choose one of {', '.join(values)}")
    return ("string", _is_str, validate)


def _spoken(words: tuple[str, ...]) -> str:
    """("none", "host", "pasta") -> "none, host or pasta"."""
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))


#: Kinds: (type name, type check[, value check]).
STR = ("string", _is_str, _no_nul)
BOOL = ("boolean", _is_bool)
ID = ("integer id (0..4294967294)", _is_id)
INT = ("integer", _is_int)
STRS = ("array of strings", _is_str_list, _each(_no_nul))
PORTS = ("array of port numbers (1..65535)", _is_port_list)
STRMAP = ("table of strings", _is_str_map)
SIZE = ("size (bytes as integer, or a string like \"64M\")", _is_size, _discard(parse_size))
DURATION = ("duration (seconds as number, or a string like \"10m\")",
            lambda v: _is_int(v) or isinstance(v, (float, str)) and not isinstance(v, bool),
            _discard(parse_duration))
MODE = ("octal mode string (e.g. \"0755\")", lambda v: _is_int(v) or _is_str(v),
        _discard(parse_mode))
ABSPATH = ("absolute path", _is_str, _discard(require_absolute))
ABSPATHS = ("array of absolute paths", _is_str_list, _each(_discard(require_absolute)))
ENVNAMES = ("array of variable names", _is_str_list, _each(_env_name))
ENVMAP = ("table of strings", _is_str_map, _env_table)
HOSTNAME = ("hostname", _is_str, _hostname)
MOUNTS = ("array of mount tables", _is_mount_list, lambda v, o: _validate_mounts(v, o))
RESET = ("array of key paths like \"environment.keep\"", _is_str_list,
         _each(lambda v, o: _validate_key_path(v, o)))
NUMBER = ("number", lambda v: _is_int(v) or isinstance(v, float))
RLIMITS = ("table of limits (N, \"SOFT:HARD\" or [soft, hard])",
           lambda v: isinstance(v, dict) and all(
               _is_int(x) or isinstance(x, (str, list)) for x in v.values()))

QUOTAS = ("table of counts (name = N or \"inherit\")",
          lambda v: isinstance(v, dict) and all(_is_int(x) or x == "inherit" for x in v.values()))


def _f(kind: tuple, doc: str) -> Field:
    return Field(kind[0], kind[1], doc, kind[2] if len(kind) > 2 else None)


#: Every section and key a profile may contain.
SCHEMA: dict[str, dict[str, Field] | Field] = {
    "description": _f(STR, "One line describing the profile, shown by 'jailpy profile list'."),
    "extends": _f(STRS, "Profiles (names or paths) this one is layered on, in order."),
    "reset": _f(RESET, "Keys (\"section.key\") whose inherited values this profile discards."),
    "namespaces": {
        **{name: _f(BOOL, f"Create a new {name} namespace (true) or share the host's (false).")
           for name in NAMESPACES},
        "nested": _f(BOOL, "Let processes inside build sandboxes of their own: user "
                           "namespaces and mounts in them; Landlock off (default false)."),
    },
    "identity": {
        "uid": _f(ID, "User id inside the sandbox; default: the caller's."),
        "gid": _f(ID, "Group id inside the sandbox; default: the caller's."),
        "map_all": _f(BOOL, "Map the caller's whole subordinate range (newuidmap/newgidmap)."),
    },
    "filesystem": {
        "root_readonly": _f(BOOL, "Make the sandbox root tmpfs read-only after all ops."),
        "mounts": _f(MOUNTS, "Ordered filesystem operations; later ones go over earlier ones."),
        "remove": _f(ABSPATHS, "Destinations whose inherited mount ops are dropped."),
    },
    "environment": {
        "clear": _f(BOOL, "Start from an empty environment instead of the caller's."),
        "keep": _f(ENVNAMES, "Variables (names or globs like LC_*) kept from the caller."),
        "set": _f(ENVMAP, "Variables set inside, after keep and unset."),
        "unset": _f(ENVNAMES, "Variables removed."),
    },
    "process": {
        "hostname": _f(HOSTNAME, "Hostname inside (needs the uts namespace)."),
        "cwd": _f(ABSPATH, "Working directory inside; default: the caller's when visible, else /."),
        "argv0": _f(STR, "argv[0] given to the command."),
        "new_session": _f(BOOL, "Run the command in a new session, away from the caller's "
                          "terminal (false: share it, for people who want the host terminal)."),
        "tty": _f(BOOL, "Give the sandbox a pseudo-terminal of its own (default: when stdin is "
                  "a terminal and new_session is on)."),
        "die_with_parent": _f(BOOL, "Kill the whole sandbox when jailpy dies."),
        "wait_all": _f(BOOL, "Run until the last process inside exits, not only the command "
                       "(apps that restart themselves); the exit status is still the "
                       "command's."),
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
        "mode": _f(choice("network mode", tuple(NETWORK_MODES)),
                   f"{_spoken(tuple(NETWORK_MODES))}."),
        "host_loopback": _f(BOOL, "Let the sandbox reach the host's 127.0.0.1 at 10.0.2.2 "
                            "(slirp4netns, pasta)."),
        "publish": _f(STRS, "Ports published on the host: "
                      "[HOST_ADDR:]HOST_PORT:SANDBOX_PORT[/tcp|/udp]."),
        "allow_connect_tcp": _f(PORTS, "Only these TCP ports may be connected to (Landlock)."),
        "allow_bind_tcp": _f(PORTS, "Only these TCP ports may be bound (Landlock)."),
        "best_effort": _f(BOOL, "Run without the port rules when the kernel cannot enforce "
                          "them, instead of failing."),
        "allow_hosts": _f(STRS, "network.mode = \"proxy\": the host names the egress proxy "
                          "lets through: NAME, *.DOMAIN or an IP address, optional :PORT "
                          "(default ports 80 and 443)."),
        "egress_log": _f(STR, "network.mode = \"proxy\": log every connection attempt as a "
                         "JSON line to this host file (\"-\": stderr)."),
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
        "quotas": _f(QUOTAS, "Per-user kernel quotas inside the sandbox's user namespace "
                     "(/proc/sys/user/max_NAME): inotify_instances (default 32), "
                     "inotify_watches (default 16384), fanotify_groups, fanotify_marks, "
                     "user_namespaces, mnt_namespaces, ... ; \"inherit\": write none, only "
                     "the namespaces above bound it."),
    },
    "workspace": {
        "path": _f(STR, "Directory bound read-write and used as the working directory; "
                   "must not be / or contain the home directory."),
    },
    "changes": {
        "enabled": _f(BOOL, "Overlay the paths and keep what the command writes for review "
                      "(jailpy changes)."),
        "paths": _f(ABSPATHS, "Host directories overlaid; default: the current directory."),
        "dir": _f(ABSPATH, "Where run directories go; default: $XDG_STATE_HOME/jailpy/changes."),
        "size": _f(SIZE, "Keep the upper layer on a tmpfs of this size, copied out at exit."),
        "review": _f(BOOL, "Review the changes interactively when the command exits."),
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
        "dbus_system": _f(choice("system bus mode", SYSTEM_BUS_MODES),
                          f"System bus: {_spoken(SYSTEM_BUS_MODES)}."),
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
MOUNT_KEYS: dict[str, tuple[str, ...]] = {kind: MOUNT_TABLE[kind].keys for kind in MOUNT_KINDS}
#: Keys a mount table may have besides its op key.
MOUNT_OPTION_KEYS = tuple(dict.fromkeys(key for keys in MOUNT_KEYS.values() for key in keys))
#: The op keys of the -try forms ("ro-bind-try"), by the key they stand for.
TRY_KEYS = {f"{kind}-try": kind for kind in MOUNT_KINDS if MOUNT_TABLE[kind].try_form}


def key_part(name: str) -> str:
    """A key as it appears in a key path: bare, or TOML-quoted when it must be."""
    if name.isascii() and name.replace("_", "a").replace("-", "a").isalnum():
        return name
    from .emit import key  # rare: only keys that need quoting

    return key(name)



def _q(name: str) -> str:
    """A key quoted for a message, on one line whatever it contains."""
    quoted = key_part(name)
    return f"'{quoted}'" if quoted == name else quoted


def _home_of(key: str) -> str | None:
    """The section a key belongs to, when it is misplaced (for the hint)."""
    homes = [name for name, spec in SCHEMA.items() if isinstance(spec, dict) and key in spec]
    return homes[0] if len(homes) == 1 else None


def _unknown(key: str, choices: list[str], origin: str, here: str | None) -> ConfigError:
    hint = suggest(key, choices)
    home = _home_of(key) if hint is None else None
    if home is not None and home != here:
        hint = f"{_q(key)} belongs in the [{home}] section"
    elif hint is None and here is None and key in MOUNT_KEYS:
        hint = "mount ops go in the array filesystem.mounts"
    return ConfigError(f"unknown key {_q(key)}", origin=origin, hint=hint)


def _type_of(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _fields(doc: dict[str, Any], source: str):
    """(field, value, origin, section) for every key of a structurally valid document."""
    for key, value in doc.items():
        spec = SCHEMA[key]
        if isinstance(spec, Field):
            yield spec, value, f"{source}: {key}", None
        else:
            for sub, subvalue in value.items():
                yield spec[sub], subvalue, f"{source}: {key}.{sub}", key


def check_structure(doc: dict[str, Any], source: str) -> None:
    """Keys and types; valid before ${VAR} expansion."""
    for key, value in doc.items():
        spec = SCHEMA.get(key)
        if spec is None:
            raise _unknown(key, list(SCHEMA), f"{source}: {key_part(key)}", None)
        if isinstance(spec, Field):
            _check_type(spec, value, f"{source}: {key}")
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table ([{key}]), got {_type_of(value)}",
                              origin=f"{source}: {key}")
        for sub, subvalue in value.items():
            origin = f"{source}: {key}.{key_part(sub)}"
            field = spec.get(sub)
            if field is None:
                raise _unknown(sub, list(spec), origin, key)
            _check_type(field, subvalue, origin)
    mounts = doc.get("filesystem", {}).get("mounts", [])
    check_mount_count(len(mounts), f"{source}: filesystem.mounts")
    for i, entry in enumerate(mounts):
        check_mount_structure(entry, f"{source}: filesystem.mounts[{i}]")


#: The most mount ops one profile (with everything it extends and the options) may
#: have: far beyond any real sandbox, and small enough that checking and planning
#: them stays well under a second (documented in jailpy-profile(5)).
MAX_MOUNT_OPS = 16_384


def check_mount_count(count: int, origin: str) -> None:
    if count > MAX_MOUNT_OPS:
        raise ConfigError(f"{count} mount ops; at most {MAX_MOUNT_OPS} are allowed",
                          origin=origin)


def check_values(doc: dict[str, Any], source: str) -> None:
    """Value checks of every field; run on expanded (variable-free) documents."""
    for field, value, origin, _ in _fields(doc, source):
        if field.validate is not None:
            field.validate(value, origin)
    _check_values(doc, source)


def validate_document(doc: dict[str, Any], source: str) -> None:
    """Check one document with no variables left (CLI layer, expanded file); raise on
    the first problem."""
    check_structure(doc, source)
    check_values(doc, source)


def _check_type(field: Field, value: Any, origin: str) -> None:
    if not field.check(value):
        raise ConfigError(f"expected {field.type_name}, got {_type_of(value)}", origin=origin)


def _check_values(doc: dict[str, Any], source: str) -> None:
    """Checks of one section that no single key can make."""
    if "desktop" in doc:
        from .desktop import check_section

        check_section(doc["desktop"], f"{source}: desktop")
    from .security import check_values as _check_security

    _check_security(doc, source)


def _validate_key_path(path: str, origin: str) -> None:
    """For `reset`: "section.key" must name a key of SCHEMA."""
    section, _, key = path.partition(".")
    spec = SCHEMA.get(section)
    if not isinstance(spec, dict) or key not in spec:
        known = [f"{s}.{k}" for s, sub in SCHEMA.items() if isinstance(sub, dict) for k in sub]
        raise ConfigError(f"not a key path: {path!r}", origin=origin,
                          hint=suggest(path, known) or "write it as \"section.key\"")


def mount_kind(entry: dict[str, Any], origin: str) -> tuple[str, bool]:
    """The op kind of a mount table and whether it is a -try form."""
    kinds = [k for k in entry if k in MOUNT_KEYS or k in TRY_KEYS]
    if len(kinds) != 1:
        found = "none" if not kinds else ", ".join(kinds)
        raise ConfigError(f"a mount table needs exactly one op key ({', '.join(MOUNT_KINDS)}); "
                          f"found {found}", origin=origin)
    kind = kinds[0]
    return (TRY_KEYS[kind], True) if kind in TRY_KEYS else (kind, False)


def check_mount_structure(entry: Any, origin: str) -> None:
    """Keys and types of one mount table (before expansion)."""
    if not isinstance(entry, dict):
        raise ConfigError(f"expected a mount table, got {_type_of(entry)}", origin=origin)
    for key in entry:
        if key not in MOUNT_KEYS and key not in TRY_KEYS and key not in MOUNT_OPTION_KEYS:
            choices = [*MOUNT_KEYS, *MOUNT_OPTION_KEYS]
            raise _unknown(key, choices, f"{origin}.{key_part(key)}", "filesystem")
    kind, _ = mount_kind(entry, origin)
    allowed = set(MOUNT_KEYS[kind]) | {kind, kind + "-try"}
    for key, value in entry.items():
        where = f"{origin}.{key_part(key)}"
        if key not in allowed:
            raise ConfigError(f"'{key}' does not apply to a {kind} op", origin=where,
                              hint=f"a {kind} op takes {', '.join(MOUNT_KEYS[kind]) or 'no other keys'}")
        if key == "optional" and not isinstance(value, bool):
            raise ConfigError(f"expected boolean, got {_type_of(value)}", origin=where)
        if key == "size" and not _is_size(value):
            raise ConfigError(f"expected {SIZE[0]}, got {_type_of(value)}", origin=where)
        if key == "mode" and not MODE[1](value):
            raise ConfigError(f"expected {MODE[0]}, got {_type_of(value)}", origin=where)
        if key in ("dest", "content", "upper", "work", kind, kind + "-try") and \
                not isinstance(value, str):
            raise ConfigError(f"expected string, got {_type_of(value)}", origin=where)
        if key == "lower" and not _is_str_list(value):
            raise ConfigError(f"expected {ABSPATHS[0]}, got {_type_of(value)}", origin=where)
    for key, note in MOUNT_TABLE[kind].required.items():
        if key not in entry:
            raise ConfigError(f"a {kind} op needs '{key}'{note}", origin=origin)


def check_mount_values(entry: dict[str, Any], origin: str) -> None:
    """Paths, sizes and modes of one structurally valid, expanded mount table."""
    kind, is_try = mount_kind(entry, origin)
    op_key = kind + "-try" if is_try else kind
    if MOUNT_TABLE[kind].source == "target":  # a symlink's target may be relative
        _no_nul(entry[op_key], f"{origin}.{op_key}")
    else:
        require_absolute(entry[op_key], f"{origin}.{op_key}")
    for key in ("dest", "upper", "work"):
        if key in entry:
            require_absolute(entry[key], f"{origin}.{key}")
    for i, path in enumerate(entry.get("lower", ())):
        require_absolute(path, f"{origin}.lower[{i}]")
    if "size" in entry:
        parse_size(entry["size"], f"{origin}.size")
    if "mode" in entry:
        parse_mode(entry["mode"], f"{origin}.mode")


def _validate_mounts(entries: list[dict[str, Any]], origin: str) -> None:
    for i, entry in enumerate(entries):
        check_mount_values(entry, f"{origin}[{i}]")
