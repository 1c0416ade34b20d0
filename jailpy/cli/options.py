"""The `jailpy run` options, declared once as data.

Two parsers read this table: the click command in cli.py (help text, shell
completion, every other command, error messages) and the import-free fast
path in fastrun.py, which handles a well-formed `jailpy run` without
importing click at all (click's import alone costs more than building a
sandbox). To add a run option, add a row here; both parsers pick it up, and
cli.py's `overrides_layer` turns the parsed values into a profile layer.

Kinds:
  value   one value; the last occurrence wins
  multi   repeatable, each occurrence takes `nargs` values, order kept
  flag    present -> True, absent -> default
  switch  --NAME / --no-NAME (or the `off` spelling) -> True / False / None
"""

from __future__ import annotations


class Opt:
    __slots__ = ("dest", "flags", "kind", "nargs", "type", "help", "metavar", "off", "default")

    def __init__(self, dest: str, flags: tuple[str, ...], kind: str, help: str, *,
                 nargs: int = 1, type: type = str, metavar: str | None = None,
                 off: str | None = None, default: object = None) -> None:
        self.dest = dest
        self.flags = flags
        self.kind = kind
        self.nargs = nargs
        self.type = type
        self.help = help
        self.metavar = metavar
        self.off = off
        self.default = default


#: Filesystem options: dest -> (op kind, number of arguments, -try form, help).
FS_OPTIONS: dict[str, tuple[str, int, bool, str]] = {
    "bind": ("bind", 2, False, "Bind SRC to DEST read-write."),
    "bind_try": ("bind", 2, True, "Like --bind; skipped if SRC is missing."),
    "ro_bind": ("ro-bind", 2, False, "Bind SRC to DEST read-only (submounts too)."),
    "ro_bind_try": ("ro-bind", 2, True, "Like --ro-bind; skipped if SRC is missing."),
    "dev_bind": ("dev-bind", 2, False, "Bind SRC to DEST allowing device access."),
    "dev_bind_try": ("dev-bind", 2, True, "Like --dev-bind; skipped if SRC is missing."),
    "tmpfs": ("tmpfs", 1, False, "Mount a tmpfs on DEST (see --size, --perms)."),
    "proc": ("proc", 1, False, "Mount a fresh procfs on DEST."),
    "dev": ("dev", 1, False, "Mount a minimal /dev on DEST."),
    "mqueue": ("mqueue", 1, False, "Mount a POSIX message queue fs on DEST."),
    "symlink": ("symlink", 2, False, "Create a symlink DEST pointing to SRC (the link target)."),
    "dir": ("dir", 1, False, "Create directory DEST (see --perms)."),
    "file": ("file", 2, False, "Create file DEST with the text SRC (see --perms)."),
    "remount_ro": ("remount-ro", 1, False, "Make the mount tree at DEST read-only."),
    "chmod": ("chmod", 2, False, "Set the mode of DEST: --chmod OCTAL DEST."),
}
#: Options that modify the next filesystem op.
MODIFIERS = ("size", "perms")
NAMESPACES = ("user", "mount", "pid", "ipc", "uts", "net", "cgroup")
#: Options that become [limits] and [workspace] keys (profile/limits.py cli_sections).
LIMIT_OPTIONS = ("rlimits", "timeout", "kill_grace", "memory_max", "memory_swap_max",
                 "pids_max", "cpus", "limits_best_effort", "workspace")


def _fs_rows() -> list[Opt]:
    rows = []
    special = {"symlink": "TARGET DEST", "file": "TEXT DEST", "chmod": "OCTAL DEST"}
    for dest, (_, nargs, _, help_text) in FS_OPTIONS.items():
        metavar = special.get(dest, "SRC DEST" if nargs == 2 else "DEST")
        rows.append(Opt(dest, ("--" + dest.replace("_", "-"),), "multi", help_text,
                        nargs=nargs, metavar=metavar))
    return rows


def _desktop_switch(name: str, help_text: str) -> Opt:
    flag = "--" + name.replace("_", "-")
    return Opt(f"desktop_{name}", (flag,), "switch", help_text, off=f"--no-{flag[2:]}")


def _desktop_multi(name: str, metavar: str, help_text: str) -> Opt:
    return Opt(f"desktop_{name}", ("--" + name.replace("_", "-"),), "multi", help_text,
               metavar=metavar)


#: [desktop] switches (jailpy/desktop/options.py turns them into a profile layer).
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
        metavar="MODE"),
    _desktop_multi("dbus_system_see", "NAME",
                   "System bus name to see (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_talk", "NAME",
                   "System bus name to call (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_call", "NAME=RULE",
                   "System bus call rule (implies --dbus-system filtered)."),
    _desktop_multi("dbus_system_broadcast", "NAME=RULE",
                   "System bus broadcast rule (implies --dbus-system filtered)."),
    _desktop_multi("user_dir", "NAME=MODE",
                   "XDG user dir (downloads, documents, ...) as rw, ro or none."),
    _desktop_multi("app_dir", "DIR", "App state directory: read-write, created when missing."),
    _desktop_multi("desktop_optional", "PIECE",
                   "Skip PIECE (x11, wayland, ...) when it is missing instead of failing."),
]

RUN_OPTIONS: list[Opt] = [
    Opt("profile", ("-p", "--profile"), "value",
        "Profile name or path to a .toml file (default: default).", metavar="NAME|FILE"),
    *_fs_rows(),
    Opt("size", ("--size",), "multi", "Size of the next --tmpfs (e.g. 64M).", metavar="SIZE"),
    Opt("perms", ("--perms",), "multi", "Mode of the next --tmpfs/--dir/--file.",
        metavar="OCTAL"),
    *[Opt(f"share_{ns}", (f"--share-{ns}",), "flag", f"Share the host's {ns} namespace.",
          default=False) for ns in NAMESPACES],
    Opt("uid", ("--uid",), "value", "User id inside the sandbox.", type=int, metavar="N"),
    Opt("gid", ("--gid",), "value", "Group id inside the sandbox.", type=int, metavar="N"),
    Opt("map_all", ("--map-all",), "flag",
        "Map the whole subordinate id range (needs newuidmap and /etc/subuid)."),
    Opt("hostname", ("--hostname",), "value", "Hostname inside the sandbox.", metavar="NAME"),
    Opt("cwd", ("--chdir",), "value", "Working directory inside.", metavar="DIR"),
    Opt("argv0", ("--argv0",), "value", "argv[0] for the command.", metavar="NAME"),
    Opt("setenv", ("--setenv",), "multi", "Set an environment variable.", nargs=2,
        metavar="NAME VALUE"),
    Opt("unsetenv", ("--unsetenv",), "multi", "Unset an environment variable.", metavar="NAME"),
    Opt("keep_env", ("--keep-env",), "multi",
        "Keep a variable (or glob) from the caller's environment.", metavar="NAME|GLOB"),
    Opt("clear_env", ("--clearenv",), "switch",
        "Start from an empty environment, or from the caller's.", off="--inherit-env"),
    Opt("new_session", ("--new-session",), "switch",
        "Run in a new session (default); opt out for job control.", off="--no-new-session"),
    Opt("die_with_parent", ("--die-with-parent",), "switch",
        "Kill the sandbox when jailpy dies (default on).", off="--no-die-with-parent"),
    Opt("pass_fds", ("--pass-fd",), "multi", "Keep file descriptor N open in the sandbox.",
        type=int, metavar="N"),
    Opt("net_mode", ("--net",), "value",
        "Network: none (default, loopback only), host, slirp4netns or pasta.", metavar="MODE"),
    Opt("publish", ("--publish",), "multi",
        "Publish a sandbox port on the host: [HOST_ADDR:]HOST_PORT:SANDBOX_PORT[/tcp|/udp] "
        "(host address default 127.0.0.1; slirp4netns or pasta).", metavar="SPEC"),
    Opt("host_loopback", ("--host-loopback",), "switch",
        "Let the sandbox reach the host's 127.0.0.1 at 10.0.2.2 (default off).",
        off="--no-host-loopback"),
    Opt("allow_connect_tcp", ("--allow-connect-tcp",), "multi",
        "Allow outgoing TCP connections only to this port (repeatable; Landlock).",
        type=int, metavar="PORT"),
    Opt("allow_bind_tcp", ("--allow-bind-tcp",), "multi",
        "Allow binding only this TCP port (repeatable; Landlock).", type=int, metavar="PORT"),
    # Limits, workspace and the JSON result (docs/limits.md).
    Opt("rlimits", ("--rlimit",), "multi",
        "Set an rlimit: as, data, nofile, nproc, cpu, fsize, core, stack, memlock "
        "(e.g. nofile=1024, fsize=1G:2G, cpu=10m).", metavar="NAME=SOFT[:HARD]"),
    Opt("timeout", ("--timeout",), "value",
        "Wall-clock limit (e.g. 10m): SIGTERM, then SIGKILL; exit status 124.",
        metavar="DURATION"),
    Opt("kill_grace", ("--kill-grace",), "value",
        "Time between the timeout's SIGTERM and SIGKILL (default 5s).", metavar="DURATION"),
    Opt("memory_max", ("--memory-max",), "value", "cgroup memory limit (e.g. 2G).",
        metavar="SIZE"),
    Opt("memory_swap_max", ("--memory-swap-max",), "value",
        "cgroup swap limit on top of --memory-max (default 0).", metavar="SIZE"),
    Opt("pids_max", ("--pids-max",), "value", "cgroup limit on processes and threads.",
        type=int, metavar="N"),
    Opt("cpus", ("--cpus",), "value", "cgroup CPU bandwidth in CPUs.", type=float,
        metavar="N"),
    Opt("limits_best_effort", ("--limits-best-effort",), "flag",
        "Run even when a cgroup limit cannot be applied (warns)."),
    Opt("workspace", ("--workspace",), "value",
        "Bind DIR read-write and run there (the ci-build profile uses $PWD).", metavar="DIR"),
    Opt("json_status", ("--json-status",), "value",
        "Write the result as one JSON object to FILE (- for stdout).", metavar="FILE|-"),
    Opt("json_status_fd", ("--json-status-fd",), "value",
        "Write the JSON result to file descriptor N.", type=int, metavar="N"),
    # Privilege layers (turned into a profile layer by security_opts.py).
    Opt("cap_keep", ("--cap-keep",), "multi",
        "Keep capability CAP (e.g. CAP_NET_BIND_SERVICE) inside.", metavar="CAP"),
    Opt("seccomp_enabled", ("--seccomp",), "switch",
        "Install the profile's seccomp filter (default), or none.", off="--no-seccomp"),
    Opt("seccomp_deny", ("--seccomp-deny",), "multi", "Also refuse this syscall or @group.",
        metavar="SYSCALL|@GROUP"),
    Opt("seccomp_allow", ("--seccomp-allow",), "multi",
        "Allow this syscall or @group (an exception in deny-list mode).",
        metavar="SYSCALL|@GROUP"),
    Opt("seccomp_action", ("--seccomp-action",), "value",
        "Action for refused calls: errno[:NAME], kill-process, trap, log.", metavar="ACTION"),
    Opt("allow_userns", ("--allow-userns",), "flag",
        "Allow creating user namespaces (and the others) inside the sandbox."),
    Opt("landlock_enabled", ("--landlock",), "switch",
        "Enforce Landlock rules (default), or not.", off="--no-landlock"),
    Opt("landlock_read", ("--landlock-read",), "multi",
        "Landlock: allow reading beneath PATH (a path inside the sandbox).", metavar="PATH"),
    Opt("landlock_write", ("--landlock-write",), "multi",
        "Landlock: allow reading and writing beneath PATH.", metavar="PATH"),
    Opt("landlock_exec", ("--landlock-exec",), "multi",
        "Landlock: allow reading and executing beneath PATH.", metavar="PATH"),
    *DESKTOP_OPTIONS,
    Opt("explain", ("--explain",), "flag", "Print the resolved plan and run nothing.",
        default=False),
    Opt("debug", ("--debug",), "flag", "Show tracebacks for jailpy's own errors.",
        default=False),
]


def defaults() -> dict[str, object]:
    """Parsed values before any option is seen (click's defaults, as the fast path has them)."""
    return {opt.dest: () if opt.kind == "multi" else opt.default for opt in RUN_OPTIONS}
