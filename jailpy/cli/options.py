"""THE `jailpy run` option table: one row per option, naming the profile key it sets.

Two parsers read the table: the click command in commands.py (help text,
completion, every other command, error messages) and `parse_run` below, which
handles a well-formed `jailpy run` without importing click (click's import
alone costs more than building a sandbox). layer.py turns what either parsed
into one profile layer, generically over the rows. To add a run option, add a
row: both parsers and the layer pick it up, and the parity test covers it.

Parse kinds (`kind`):
  value   one value; the last occurrence wins
  multi   repeatable, each occurrence takes `nargs` values, order kept
  flag    present -> True, absent -> default
  switch  --NAME / --no-NAME (or the `off` spelling) -> True / False / None

How a row sets its profile key (`into`; rows without a key set none):
  set       key = value (the default for value, flag and switch rows)
  append    key = [value, ...] (the default for multi rows)
  table     key = {name: value, ...} from (name, value) pairs
  mount     one filesystem.mounts op per occurrence, in command-line order
  modifier  one field (size, mode) of the next mount op; a key ending in [] adds
            one item to a list field (--lower)

`group` is the `jailpy run --help` section a row is listed under: given
for rows without a profile key, else the section of the key (GROUP_OF_SECTION).
`complete` names what shell completion offers for the row's values (see
commands.py): path, dir, network, capability, seccomp, seccomp-action, profile.

`convert(value, origin)` checks one value and returns what the profile gets,
so a bad value is reported against the option ("--memory-max: ..."), not a
key of the command-line layer. `implies` sets more keys, unless an option set
them itself. Converters import what they need when called: this module is on
the start-up path of every `jailpy run`.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..policy import MOUNT_TABLE, NAMESPACES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..policy import MountKind


#: `jailpy run --help` sections, in the order listed, with their titles.
GROUPS: dict[str, str] = {
    "profile": "Profile",
    "filesystem": "Filesystem (in command-line order, after the profile's mounts)",
    "identity": "Identity, process and environment",
    "network": "Network",
    "security": "Security: capabilities, seccomp, Landlock",
    "limits": "Limits",
    "desktop": "Desktop",
    "output": "Output and diagnostics",
}

#: A keyed row's group, from the first part of its profile key.
GROUP_OF_SECTION = {
    "filesystem": "filesystem", "workspace": "filesystem", "namespaces": "identity",
    "identity": "identity", "process": "identity", "environment": "identity",
    "changes": "filesystem",
    "network": "network", "capabilities": "security", "seccomp": "security",
    "landlock": "security", "limits": "limits", "desktop": "desktop",
}


class Opt:
    __slots__ = ("dest", "flags", "kind", "nargs", "type", "help", "metavar", "off", "default",
                 "key", "into", "convert", "implies", "group", "complete")

    def __init__(self, dest: str, flags: tuple[str, ...], kind: str, help: str, *,
                 nargs: int = 1, type: type = str, metavar: str | None = None,
                 off: str | None = None, default: object = None, key: str | None = None,
                 into: str | None = None, convert: "Callable[[Any, str], Any] | None" = None,
                 implies: "dict[str, Any] | None" = None, group: str | None = None,
                 complete: str | None = None) -> None:
        self.dest = dest
        self.flags = flags
        self.kind = kind
        self.nargs = nargs
        self.type = type
        self.help = help
        self.metavar = metavar
        self.off = off
        self.default = default
        self.key = key
        self.into = into or ("append" if kind == "multi" else "set")
        self.convert = convert
        self.implies = implies or {}
        self.group = group or GROUP_OF_SECTION[key.split(".")[0]]  # type: ignore[union-attr]
        self.complete = complete

    @property
    def name(self) -> str:
        """The long spelling, as errors and origins name the option."""
        return self.flags[-1]

    def spelling(self, value: object) -> str:
        """How a scalar value was asked for: `--x11`, or `--no-x11` for a switch's False."""
        return self.off if value is False and self.off else self.name

    def item_origin(self, value: object) -> str:
        """One occurrence of a repeatable option: `--bind /a /b`, `--keep-env LANG`."""
        args = value if isinstance(value, tuple) else (value,)
        return " ".join((self.name, *map(str, args)))


# -- converters: check one value, naming the option; return the profile's value -----


def _shared_with_host(value: bool, origin: str) -> bool:
    """`--share-NS`: the namespace is not new."""
    return False


def split_rlimit_option(text: str, origin: str | None = None) -> tuple[str, str]:
    """`--rlimit NAME=SOFT[:HARD]` -> (name, value text); the value is parsed with the
    profile's [limits.rlimits] (profile/limits.py)."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ConfigError(f"expected NAME=SOFT[:HARD], got {text!r}",
                          origin=origin or f"--rlimit {text}",
                          hint="e.g. --rlimit nofile=1024 or --rlimit fsize=1G:2G")
    return name.strip().lower(), value.strip()


def env_assignment(text: str, origin: str) -> tuple[str, str]:
    """`-e NAME=VALUE` (docker's spelling) -> (name, value)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"expected NAME=VALUE, got {text!r}", origin=origin,
                          hint="e.g. -e LANG=C.UTF-8 (or --setenv LANG C.UTF-8)")
    return name, value


def _setenv(pair: tuple[str, str], origin: str) -> tuple[str, str]:
    """`--setenv NAME VALUE`: two words, as in bwrap; NAME=VALUE is the -e spelling."""
    name, value = pair
    if "=" in name:
        raise ConfigError(f"variable name {name!r} contains '='", origin=origin,
                          hint=f"--setenv takes two words (--setenv NAME VALUE); "
                               f"for NAME=VALUE write -e {name}")
    return pair


def _seccomp_entry(value: str, origin: str) -> str:
    from ..profile.security import check_entry

    check_entry(value, origin)
    return value


def _seccomp_action(value: str, origin: str) -> str:
    from ..plan.seccomp import parse_action

    parse_action(value, origin)
    return value


def _capability(value: str, origin: str) -> str:
    from ..linux.capabilities import capability_numbers

    capability_numbers((value,), origin)
    return value


def _desktop_value(key: str) -> "Callable[[Any, str], Any]":
    """A checker for one [desktop] key, as profile/desktop.py checks a profile's."""
    def convert(value: object, origin: str) -> object:
        from ..profile.desktop import check_value

        check_value(key, value, origin)
        return value
    return convert


def _user_dir(entry: str, origin: str) -> tuple[str, str]:
    """`--user-dir NAME=MODE` -> (name, mode)."""
    name, sep, mode = entry.partition("=")
    if not sep:
        raise ConfigError(f"expected NAME=MODE, got {entry!r}", origin="--user-dir",
                          hint="e.g. --user-dir downloads=rw")
    return _desktop_value("user_dirs")((name, mode), origin)  # type: ignore[return-value]


# -- filesystem rows: one per kind of policy.MOUNT_TABLE, in its order ------------------


def _absolute(path: str, origin: str) -> str:
    """A relative path on the command line means one in the caller's directory (as
    bwrap reads a relative SRC); profiles, read from anywhere, must say which."""
    import os

    return path if path.startswith("/") else os.path.abspath(path)


def _log_path(path: str, origin: str) -> str:
    """A log file like any command-line path; '-' stays stderr."""
    return path if path == "-" else _absolute(path, origin)


def _mount_op(kind: "MountKind", is_try: bool) -> "Callable[[Any, str], dict[str, str]]":
    """A converter from an option's arguments to one filesystem.mounts table; the
    host source and the destination, when relative, are taken from the caller's
    directory (`--bind proj proj` shows ./proj at the same absolute path inside;
    bwrap would put the destination under / instead)."""
    paths = {"dest", "source"} if kind.source == "path" else {"dest"}

    def convert(value: "str | tuple[str, ...]", origin: str) -> dict[str, str]:
        values = value if isinstance(value, tuple) else (value,)
        values = tuple(_absolute(v, origin) if field in paths else v
                       for field, v in zip(kind.arguments, values))
        return kind.table(values, is_try)
    return convert


def _mount_rows() -> list[Opt]:
    rows = []
    for kind in MOUNT_TABLE.values():
        if not kind.in_profiles:
            continue
        spellings = [(kind.name, kind.help, False)]
        if kind.try_form:
            spellings.append((f"{kind.name}-try", kind.try_help, True))
        for name, text, is_try in spellings:
            rows.append(Opt(name.replace("-", "_"), (f"--{name}",), "multi", text,
                            nargs=len(kind.arguments), metavar=kind.metavar,
                            key="filesystem.mounts", into="mount",
                            convert=_mount_op(kind, is_try), complete="path"))
    return rows


# -- desktop rows ------------------------------------------------------------------------


def _desktop_switch(name: str, help_text: str) -> Opt:
    flag = "--" + name.replace("_", "-")
    return Opt(f"desktop_{name}", (flag,), "switch", help_text, off=f"--no-{flag[2:]}",
               key=f"desktop.{name}", convert=_desktop_value(name))


def _desktop_multi(name: str, metavar: str, help_text: str, key: str | None = None,
                   complete: str | None = None) -> Opt:
    """A repeatable [desktop] option; a bus rule implies that bus is wanted."""
    key = key or name
    implies = ({"desktop.dbus_system": "filtered"} if name.startswith("dbus_system_")
               else {"desktop.dbus": True} if name.startswith("dbus_") else None)
    return Opt(f"desktop_{name}", ("--" + name.replace("_", "-"),), "multi", help_text,
               metavar=metavar, key=f"desktop.{key}", convert=_desktop_value(key),
               implies=implies, complete=complete)


#: [desktop] switches and rules.
DESKTOP_OPTIONS: list[Opt] = [
    _desktop_switch("x11", "Pass the X11 display ($DISPLAY): its socket and its cookie only."),
    _desktop_switch("x11_untrusted", "Pass X11 with an untrusted cookie (X SECURITY extension)."),
    _desktop_switch("wayland", "Pass the Wayland compositor socket."),
    _desktop_switch("pulseaudio", "Pass the PulseAudio socket and cookie."),
    _desktop_switch("pipewire", "Pass the PipeWire socket."),
    _desktop_switch("gpu", "Bind GPU devices (/dev/dri, /dev/nvidia*)."),
    _desktop_switch("dbus", "Session bus through a filtering xdg-dbus-proxy (deny by default)."),
    _desktop_switch("fonts", "Fonts and fontconfig, read-only."),
    _desktop_switch("themes", "Icon, cursor and toolkit themes, read-only."),
    _desktop_switch("locale", "Locale and time zone data, read-only."),
    _desktop_multi("dbus_see", "NAME", "Session bus name the sandbox may see (implies --dbus)."),
    _desktop_multi("dbus_talk", "NAME", "Session bus name the sandbox may call (implies --dbus)."),
    _desktop_multi("dbus_own", "NAME", "Session bus name the sandbox may own (implies --dbus)."),
    _desktop_multi("dbus_call", "NAME=RULE", "Session bus call rule (implies --dbus)."),
    _desktop_multi("dbus_broadcast", "NAME=RULE", "Session bus broadcast rule (implies --dbus)."),
    Opt("desktop_dbus_system", ("--dbus-system",), "value", "System bus: none or filtered.",
        metavar="MODE", key="desktop.dbus_system", convert=_desktop_value("dbus_system")),
    _desktop_multi("dbus_system_see", "NAME",
                   "System bus name to see (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_talk", "NAME",
                   "System bus name to call (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_call", "NAME=RULE",
                   "System bus call rule (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_broadcast", "NAME=RULE",
                   "System bus broadcast rule (implies --dbus-system filtered)."),
    Opt("desktop_user_dir", ("--user-dir",), "multi",
        "XDG user dir (downloads, documents, ...) as rw, ro or none.", metavar="NAME=MODE",
        key="desktop.user_dirs", into="table", convert=_user_dir),
    _desktop_multi("app_dir", "DIR", "App state directory: read-write, created when missing.",
                   key="app_dirs", complete="dir"),
    _desktop_multi("desktop_optional", "PIECE",
                   "Skip PIECE (x11, wayland, ...) when it is missing instead of failing.",
                   key="optional"),
]

RUN_OPTIONS: list[Opt] = [
    Opt("profile", ("-p", "--profile"), "value",
        "Profile name or path to a .toml file (default: default).", metavar="NAME|FILE",
        group="profile", complete="profile"),
    Opt("via", ("--via",), "value",
        "Run on a `jailpy serve` server (unix:/PATH or http://HOST:PORT); its profile "
        "applies. Token: $JAILPY_TOKEN or $JAILPY_TOKEN_FILE.", metavar="URL",
        group="profile"),
    *_mount_rows(),
    Opt("size", ("--size",), "multi", "Size of the next --tmpfs (e.g. 64M).", metavar="SIZE",
        key="filesystem.mounts[].size", into="modifier"),
    Opt("perms", ("--perms",), "multi", "Mode of the next --tmpfs/--dir/--file.",
        metavar="OCTAL", key="filesystem.mounts[].mode", into="modifier"),
    Opt("lower", ("--lower",), "multi",
        "Add DIR as a lower layer, beneath SRC, of the next overlay op (repeatable).",
        metavar="DIR", key="filesystem.mounts[].lower[]", into="modifier", complete="dir",
        convert=_absolute),
    # --share-net asks for the host's network: it means --net host unless --net
    # says otherwise (a contradiction the constraints then report).
    *[Opt(f"share_{ns}", (f"--share-{ns}",), "flag", f"Share the host's {ns} namespace.",
          default=False, key=f"namespaces.{ns}", convert=_shared_with_host,
          implies={"network.mode": "host"} if ns == "net" else None)
      for ns in NAMESPACES],
    Opt("uid", ("--uid",), "value", "User id inside the sandbox.", type=int, metavar="N",
        key="identity.uid"),
    Opt("gid", ("--gid",), "value", "Group id inside the sandbox.", type=int, metavar="N",
        key="identity.gid"),
    Opt("map_all", ("--map-all",), "flag",
        "Map the whole subordinate id range (needs newuidmap and /etc/subuid).",
        key="identity.map_all"),
    Opt("hostname", ("--hostname",), "value", "Hostname inside the sandbox.", metavar="NAME",
        key="process.hostname"),
    Opt("cwd", ("--chdir",), "value", "Working directory inside.", metavar="DIR",
        key="process.cwd", complete="dir"),
    Opt("argv0", ("--argv0",), "value", "argv[0] for the command.", metavar="NAME",
        key="process.argv0"),
    Opt("setenv", ("--setenv",), "multi", "Set an environment variable.", nargs=2,
        metavar="NAME VALUE", key="environment.set", into="table", convert=_setenv),
    Opt("env", ("-e", "--env"), "multi",
        "Set an environment variable, docker's spelling of --setenv.", metavar="NAME=VALUE",
        key="environment.set", into="table", convert=env_assignment),
    Opt("unsetenv", ("--unsetenv",), "multi", "Unset an environment variable.", metavar="NAME",
        key="environment.unset"),
    Opt("keep_env", ("--keep-env",), "multi",
        "Keep a variable (or glob) from the caller's environment.", metavar="NAME|GLOB",
        key="environment.keep"),
    Opt("clear_env", ("--clearenv",), "switch",
        "Start from an empty environment, or from the caller's.", off="--inherit-env",
        key="environment.clear"),
    Opt("new_session", ("--new-session",), "switch",
        "Run in a new session (default); --no-new-session shares the host terminal itself.",
        off="--no-new-session", key="process.new_session"),
    Opt("tty", ("--tty",), "switch",
        "Give the sandbox a pseudo-terminal of its own (default: when stdin is a terminal).",
        off="--no-tty", key="process.tty"),
    Opt("die_with_parent", ("--die-with-parent",), "switch",
        "Kill the sandbox when jailpy dies (default on).", off="--no-die-with-parent",
        key="process.die_with_parent"),
    Opt("wait_all", ("--wait-all",), "switch",
        "Run until the last process inside exits, not only the command (apps that restart "
        "themselves); the exit status is the command's.", off="--no-wait-all",
        key="process.wait_all"),
    Opt("pass_fds", ("--pass-fd",), "multi", "Keep file descriptor N open in the sandbox.",
        type=int, metavar="N", group="identity"),
    Opt("net_mode", ("--net",), "value",
        "Network: none (default, loopback only), host, slirp4netns, pasta or proxy.",
        metavar="MODE",
        key="network.mode", complete="network"),
    Opt("publish", ("--publish",), "multi",
        "Publish a sandbox port on the host: [HOST_ADDR:]HOST_PORT:SANDBOX_PORT[/tcp|/udp] "
        "(host address default 127.0.0.1; slirp4netns or pasta).", metavar="SPEC",
        key="network.publish"),
    Opt("host_loopback", ("--host-loopback",), "switch",
        "Let the sandbox reach the host's 127.0.0.1 at 10.0.2.2 (default off).",
        off="--no-host-loopback", key="network.host_loopback"),
    # --allow-host means --net proxy unless --net says otherwise (a contradiction
    # profile/network.py then reports).
    Opt("allow_hosts", ("--allow-host",), "multi",
        "Let the sandbox reach NAME (or *.DOMAIN, an IP; optional :PORT, default 80 and "
        "443) through jailpy's egress proxy, and nothing else (implies --net proxy).",
        metavar="NAME[:PORT]", key="network.allow_hosts",
        implies={"network.mode": "proxy"}),
    Opt("egress_log", ("--egress-log",), "value",
        "Log every connection attempt through the egress proxy as JSON lines to FILE "
        "('-': stderr).", metavar="FILE", key="network.egress_log", complete="path",
        convert=_log_path),
    Opt("allow_connect_tcp", ("--allow-connect-tcp",), "multi",
        "Allow outgoing TCP connections only to this port (repeatable; Landlock).",
        type=int, metavar="PORT", key="network.allow_connect_tcp"),
    Opt("allow_bind_tcp", ("--allow-bind-tcp",), "multi",
        "Allow binding only this TCP port (repeatable; Landlock).", type=int, metavar="PORT",
        key="network.allow_bind_tcp"),
    # Limits, workspace and the JSON result (docs/limits.md).
    Opt("rlimits", ("--rlimit",), "multi",
        "Set an rlimit: as, data, nofile, nproc, cpu, fsize, core, stack, memlock "
        "(e.g. nofile=1024, fsize=1G:2G, cpu=10m).", metavar="NAME=SOFT[:HARD]",
        key="limits.rlimits", into="table", convert=split_rlimit_option),
    Opt("timeout", ("--timeout",), "value",
        "Wall-clock limit (e.g. 10m): SIGTERM, then SIGKILL; exit status 124.",
        metavar="DURATION", key="limits.timeout"),
    Opt("kill_grace", ("--kill-grace",), "value",
        "Time between the timeout's SIGTERM and SIGKILL (default 5s).", metavar="DURATION",
        key="limits.kill_grace"),
    Opt("memory_max", ("--memory-max",), "value", "cgroup memory limit (e.g. 2G).",
        metavar="SIZE", key="limits.memory_max"),
    Opt("memory_swap_max", ("--memory-swap-max",), "value",
        "cgroup swap limit on top of --memory-max (default 0).", metavar="SIZE",
        key="limits.memory_swap_max"),
    Opt("pids_max", ("--pids-max",), "value", "cgroup limit on processes and threads.",
        type=int, metavar="N", key="limits.pids_max"),
    Opt("cpus", ("--cpus",), "value", "cgroup CPU bandwidth in CPUs.", type=float,
        metavar="N", key="limits.cpus"),
    Opt("limits_best_effort", ("--limits-best-effort",), "flag",
        "Run even when a cgroup limit cannot be applied (warns).", key="limits.best_effort"),
    Opt("workspace", ("--workspace",), "value",
        "Bind DIR read-write and run there (the ci-build profile uses $PWD).", metavar="DIR",
        key="workspace.path", complete="dir", convert=_absolute),
    # Overlays kept for review (docs/overlays.md).
    Opt("changes", ("--changes",), "flag",
        "Overlay the current directory (and --changes-path DIRs): the command writes to a "
        "copy, kept for 'jailpy changes show/commit'.", key="changes.enabled"),
    Opt("changes_path", ("--changes-path",), "multi",
        "Overlay DIR instead of the current directory (repeatable; implies --changes).",
        metavar="DIR", key="changes.paths", implies={"changes.enabled": True}, complete="dir",
        convert=_absolute),
    Opt("changes_dir", ("--changes-dir",), "value",
        "Keep run directories in DIR (default $XDG_STATE_HOME/jailpy/changes).",
        metavar="DIR", key="changes.dir", implies={"changes.enabled": True}, complete="dir",
        convert=_absolute),
    Opt("changes_size", ("--changes-size",), "value",
        "Keep the upper layer on a tmpfs of SIZE, copied out at exit (implies --changes).",
        metavar="SIZE", key="changes.size", implies={"changes.enabled": True}),
    Opt("review", ("--review",), "flag",
        "Review the changes file by file when the command exits (on a terminal).",
        key="changes.review", implies={"changes.enabled": True}),
    Opt("json_status", ("--json-status",), "value",
        "Write the result as one JSON object to FILE (- for stdout).", metavar="FILE|-",
        group="output", complete="path"),
    Opt("json_status_fd", ("--json-status-fd",), "value",
        "Write the JSON result to file descriptor N.", type=int, metavar="N", group="output"),
    # Privilege layers: [capabilities], [seccomp], [landlock].
    Opt("cap_keep", ("--cap-keep",), "multi",
        "Keep capability CAP (e.g. CAP_NET_BIND_SERVICE) inside.", metavar="CAP",
        key="capabilities.keep", convert=_capability, complete="capability"),
    Opt("seccomp_enabled", ("--seccomp",), "switch",
        "Install the profile's seccomp filter (default), or none.", off="--no-seccomp",
        key="seccomp.enabled"),
    Opt("seccomp_deny", ("--seccomp-deny",), "multi", "Also refuse this syscall or @group.",
        metavar="SYSCALL|@GROUP", key="seccomp.deny", convert=_seccomp_entry,
        complete="seccomp"),
    Opt("seccomp_allow", ("--seccomp-allow",), "multi",
        "Allow this syscall or @group (an exception in deny-list mode).",
        metavar="SYSCALL|@GROUP", key="seccomp.allow", convert=_seccomp_entry,
        complete="seccomp"),
    Opt("seccomp_action", ("--seccomp-action",), "value",
        "Action for refused calls: errno[:NAME], kill-process, kill-thread, trap, log.",
        metavar="ACTION", key="seccomp.action", convert=_seccomp_action,
        complete="seccomp-action"),
    Opt("allow_userns", ("--allow-userns",), "flag",
        "Allow creating user namespaces (and the others) inside the sandbox.",
        key="seccomp.allow_userns"),
    Opt("allow_nesting", ("--allow-nesting",), "flag",
        "Let the command build sandboxes of its own (jailpy, bwrap, unshare -Urm): "
        "mounts in its own namespaces; Landlock off.",
        key="namespaces.nested"),
    Opt("landlock_enabled", ("--landlock",), "switch",
        "Enforce Landlock rules (default), or not.", off="--no-landlock",
        key="landlock.enabled"),
    Opt("landlock_read", ("--landlock-read",), "multi",
        "Landlock: allow reading beneath PATH (a path inside the sandbox).", metavar="PATH",
        key="landlock.read", complete="path"),
    Opt("landlock_write", ("--landlock-write",), "multi",
        "Landlock: allow reading and writing beneath PATH.", metavar="PATH",
        key="landlock.write", complete="path"),
    Opt("landlock_exec", ("--landlock-exec",), "multi",
        "Landlock: allow reading and executing beneath PATH.", metavar="PATH",
        key="landlock.execute", complete="path"),
    *DESKTOP_OPTIONS,
    Opt("explain", ("--explain",), "flag", "Print the resolved plan and run nothing.",
        default=False, group="output"),
    Opt("debug", ("--debug",), "flag", "Show tracebacks for jailpy's own errors.",
        default=False, group="output"),
]


def defaults() -> dict[str, object]:
    """Parsed values before any option is seen (click's defaults, as the fast path has them)."""
    return {opt.dest: () if opt.kind == "multi" else opt.default for opt in RUN_OPTIONS}


# -- the fast parser ---------------------------------------------------------------------

_BY_FLAG = {flag: opt for opt in RUN_OPTIONS for flag in opt.flags}
_BY_OFF_FLAG = {opt.off: opt for opt in RUN_OPTIONS if opt.off}


def parse_run(args: list[str]) -> tuple[dict, list[str], list[str]] | None:
    """(values by dest, dests in command-line order, command), or None to defer to click.

    Anything this parser is not sure about (--help, an unknown option, a
    missing or malformed value) makes it step aside: the click command then
    parses the same argv and produces its usual help or error message. The
    parity test (tests/unit/test_cli_parity.py) holds the two to the same result.
    """
    values = defaults()
    order: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            rest.insert(0, arg)
            break
        if arg in _BY_OFF_FLAG:
            opt = _BY_OFF_FLAG[arg]
            values[opt.dest] = False
            order.append(opt.dest)
            continue
        flag, attached = _split_attached(arg)
        opt = _BY_FLAG.get(flag)
        if opt is None:
            return None
        order.append(opt.dest)
        if opt.kind in ("flag", "switch"):
            if attached is not None:
                return None  # --flag=value: click says a flag takes no value
            values[opt.dest] = True
            continue
        if attached is not None:
            rest.insert(0, attached)
        raw, rest = rest[:opt.nargs], rest[opt.nargs:]
        if len(raw) != opt.nargs:
            return None
        try:
            converted = tuple(opt.type(v) for v in raw)
        except ValueError:
            return None
        value = converted[0] if opt.nargs == 1 else converted
        values[opt.dest] = (*values[opt.dest], value) if opt.kind == "multi" else value
    if not rest:
        return None
    return values, order, rest


def _split_attached(arg: str) -> tuple[str, str | None]:
    """`--opt=value` and `-pvalue` -> (the option, the value); else (arg, None)."""
    if arg.startswith("--"):
        flag, sep, value = arg.partition("=")
        return (flag, value) if sep else (arg, None)
    if len(arg) > 2 and arg[:2] in _BY_FLAG:
        return arg[:2], arg[2:]
    return arg, None
