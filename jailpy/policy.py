"""The resolved Policy: the one contract between configuration and the plan.

Profiles, CLI options and the Python API all produce a Policy; the planner
(plan/) consumes it with a Caller, the facts about the invoking process.
Every field is plain data (frozen, hashable where it matters) so a Policy can
be printed, compared and cached, and every value remembers its origin so a
failure long after loading can name the profile key or option that asked
for it.

The vocabularies every layer shares are written here once, and read from
here: MOUNT_TABLE (mount op kinds), NAMESPACES, NETWORK_MODES (and the helper
modes), SYSTEM_BUS_MODES.
"""

from __future__ import annotations

import os

from .linux.syscalls import (CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
                             CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS)
from .record import Record


class MountKind:
    """One kind of mount op, as every layer sees it: the one row to add for a new op.

    Readers derive from these rows: the profile schema (the keys of a
    filesystem.mounts table), profile conversion and merging (which key names
    the source and which the destination), the `jailpy run` options (--NAME,
    --NAME-try, their arguments and help) and the Landlock rules the op grants.
    The runtime executes an op with RootBuilder's `_op_<kind>` method
    (runtime/mounts.py); that method, this row and the docs are the whole change.

    `source` is what MountOp.source means: "path" (a host path: the bind kinds),
    "target" (a symlink's target, which may be relative) or None (no source).
    `arguments` are the MountOp fields the option's arguments fill, in order;
    `keys` the further keys a mount table may have, `required` those it must
    have (key -> what the error adds). `grants` is the Landlock access on the
    destination (plan/landlock.py): for an op that `mounts` a new tree there it
    replaces what earlier ops granted at and beneath it; for one that creates
    a file or directory in place, a writable root grants more. (A plain class,
    not a Record: it is built on every `jailpy run`.)
    """

    __slots__ = ("name", "help", "arguments", "metavar", "source", "keys", "required",
                 "try_form", "grants", "mounts", "in_profiles")

    def __init__(self, name: str, help: str, *, arguments: tuple[str, ...] = ("dest",),
                 metavar: str = "DEST", source: str | None = None, keys: tuple[str, ...] = (),
                 required: dict[str, str] | None = None, try_form: bool = False,
                 grants: tuple[str, ...] = (), mounts: bool = True,
                 in_profiles: bool = True) -> None:
        # Grouped by reader. in_profiles is False for the kinds only jailpy generates,
        # which profiles and options cannot name; try_form gives NAME-try (profiles)
        # and --NAME-try (options), skipped when SRC is missing.
        self.name, self.source, self.in_profiles = name, source, in_profiles
        self.help, self.arguments, self.metavar = help, arguments, metavar  # options
        self.keys, self.required, self.try_form = keys, required or {}, try_form  # tables
        self.grants, self.mounts = frozenset(grants), mounts  # Landlock

    @property
    def option(self) -> str:
        """The `jailpy run` option: --ro-bind for ro-bind."""
        return "--" + self.name

    @property
    def try_help(self) -> str:
        return f"Like {self.option}; skipped if SRC is missing."

    @property
    def named(self) -> str:
        """The MountOp field the op key's value fills: its source, else its destination."""
        return "source" if self.source else "dest"

    def table(self, values: tuple[str, ...], is_try: bool = False) -> dict[str, str]:
        """The option's arguments as a filesystem.mounts table: --file TEXT DEST ->
        {"content": TEXT, "file": DEST}."""
        key = self.name + "-try" if is_try else self.name
        return {key if field == self.named else field: value
                for field, value in zip(self.arguments, values)}

    def __repr__(self) -> str:
        return f"MountKind({self.name!r})"


#: Landlock access words (runtime/landlock.py maps them to the kernel ABI's rights).
READ, WRITE, EXECUTE, IOCTL = "read", "write", "execute", "ioctl"
_BIND = {"arguments": ("source", "dest"), "metavar": "SRC DEST", "source": "path",
         "keys": ("dest", "optional"), "try_form": True}
_OVERLAY = {"arguments": ("source", "dest"), "metavar": "SRC DEST", "source": "path"}

#: Every mount op kind, in the order of the options in `jailpy run --help`.
MOUNT_TABLE: dict[str, MountKind] = {row.name: row for row in (
    MountKind("bind", "Bind SRC to DEST read-write.", **_BIND,
              grants=(READ, WRITE, EXECUTE)),
    MountKind("ro-bind", "Bind SRC to DEST read-only (submounts too).", **_BIND,
              grants=(READ, EXECUTE)),
    MountKind("dev-bind", "Bind SRC to DEST allowing device access.", **_BIND,
              grants=(READ, WRITE, EXECUTE, IOCTL)),
    MountKind("tmpfs", "Mount a tmpfs on DEST (see --size, --perms).", keys=("size", "mode"),
              grants=(READ, WRITE, EXECUTE)),
    # Mounted noexec; /dev also grants execute on its /dev/shm (plan/landlock.py).
    MountKind("proc", "Mount a fresh procfs on DEST.", grants=(READ, WRITE)),
    MountKind("dev", "Mount a minimal /dev on DEST.", grants=(READ, WRITE, IOCTL)),
    MountKind("mqueue", "Mount a POSIX message queue fs on DEST.", grants=(READ, WRITE)),
    MountKind("symlink", "Create a symlink DEST pointing to TARGET.",
              arguments=("source", "dest"), metavar="TARGET DEST", source="target",
              keys=("dest",), required={"dest": " (the link) besides its target"},
              mounts=False),
    MountKind("dir", "Create directory DEST (see --perms).", keys=("mode",), grants=(READ,),
              mounts=False),
    MountKind("file", "Create file DEST containing TEXT (see --perms).",
              arguments=("content", "dest"), metavar="TEXT DEST", keys=("content", "mode"),
              grants=(READ,), mounts=False),
    # Narrows the rule of an op on the same destination (plan/landlock.py).
    MountKind("remount-ro", "Make the mount tree at DEST read-only.", mounts=False),
    MountKind("chmod", "Set the mode of DEST: --chmod OCTAL DEST.", arguments=("mode", "dest"),
              metavar="OCTAL DEST", keys=("mode",), required={"mode": ""}, mounts=False),
    # Overlayfs (docs/overlays.md): SRC is the top lower layer, `lower` adds layers beneath
    # it (--lower DIR before the op); the options' order follows bwrap's --overlay family.
    MountKind("overlay", "Overlay SRC on DEST; writes go to UPPER (WORK: an empty dir on "
              "UPPER's filesystem).", arguments=("source", "upper", "work", "dest"),
              metavar="SRC UPPER WORK DEST", source="path",
              keys=("dest", "lower", "upper", "work"),
              required={"upper": " (where writes go)", "work": " (overlayfs' work dir)"},
              grants=(READ, WRITE, EXECUTE)),
    MountKind("tmp-overlay", "Overlay SRC on DEST; writes go to a tmpfs and vanish at exit "
              "(see --size).", **_OVERLAY, keys=("dest", "lower", "size"),
              grants=(READ, WRITE, EXECUTE)),
    MountKind("ro-overlay", "Overlay SRC (and each --lower before it) read-only on DEST.",
              **_OVERLAY, keys=("dest", "lower"), grants=(READ, EXECUTE),
              required={"lower": " (a second layer: overlayfs stacks two or more; one "
                        "alone is a ro-bind)"}),
    # A read-only file with generated `content` bound over `dest` (/etc/resolv.conf for a
    # network helper: plan/network.py).
    MountKind("ro-bind-data", "", grants=(READ,), in_profiles=False),
    # The same, writable (bwrap's --bind-data): the file lives in the sandbox's scratch
    # tmpfs, so what was at dest, a host file too, is covered and never written.
    MountKind("bind-data", "", grants=(READ, WRITE), in_profiles=False),
    # Covers what is at DEST with an empty, unreadable, read-only object; a glob in the
    # last component covers each match (firejail's blacklist: profile/firejail.py).
    # The planner also hides jailpy's own state with it (usercache.own_state), after
    # every other op; a file or directory bound read-only over itself is `protect`.
    MountKind("hide", "Cover DEST (a file, a directory, or a glob in its last part) "
              "with an empty unreadable one."),  # mounts, grants nothing
    MountKind("protect", "", in_profiles=False, mounts=False),
)}

#: Mount operation kinds, in the vocabulary of profiles and CLI options.
MOUNT_KINDS = tuple(name for name, row in MOUNT_TABLE.items() if row.in_profiles)
#: Kinds that take a host source path.
BIND_KINDS = tuple(name for name, row in MOUNT_TABLE.items() if row.source == "path")
#: Kinds jailpy generates itself and profiles cannot name.
GENERATED_KINDS = tuple(name for name, row in MOUNT_TABLE.items() if not row.in_profiles)


#: The namespaces a sandbox gets of its own unless told to share the host's, by
#: their name in profiles (namespaces.NAME) and options (--share-NAME), with the
#: clone(2) flag that makes each.
NAMESPACES: dict[str, int] = {
    "user": CLONE_NEWUSER, "mount": CLONE_NEWNS, "pid": CLONE_NEWPID, "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP,
}

#: network.mode values (--net MODE), each with the package that ships its user-mode
#: helper; a mode with a helper gets it started by the supervisor (docs/network.md).
NETWORK_MODES: dict[str, str | None] = {
    "none": None, "host": None, "slirp4netns": "slirp4netns", "pasta": "passt", "proxy": None,
}
#: The mode whose only way out is jailpy's own egress proxy, by host name
#: (network.allow_hosts; runtime/egress.py, docs/network.md "Egress by name").
PROXY_MODE = "proxy"
#: Modes that need a user-mode network helper started by the supervisor.
HELPER_MODES = tuple(mode for mode, package in NETWORK_MODES.items() if package)
#: The Debian/Ubuntu/Fedora package that ships each helper (for error hints).
HELPER_PACKAGES = {mode: package for mode, package in NETWORK_MODES.items() if package}

#: desktop.dbus_system values: no system bus, or one behind a filtering proxy.
SYSTEM_BUS_MODES = ("none", "filtered")


class Origins(dict):
    """Where each merged value came from, and the one way every reader looks it up.

    Keys are paths: "section.key" holds the source of a scalar (a file, or the
    CLI option) or, for an array, a list with one origin per item ("FILE:
    section.key[i]", or the option); "section.key.name" holds the source of
    one table entry. The merge fills it as a dict (profile/merge.py); the
    converters and `jailpy profile show --origins` read it through the methods
    below, and the policy records keep what they need of it (Sourced).
    """

    __slots__ = ()

    def source(self, path: str) -> str | None:
        """What the merge recorded for a value ("section.key") or one array item
        ("section.key[i]"), as it was recorded; None when nothing was."""
        found = self.get(path)
        if found is None and path.endswith("]"):
            base, _, index = path[:-1].rpartition("[")
            items = self.get(base)
            if isinstance(items, list) and index.isdigit() and int(index) < len(items):
                return items[int(index)]
        return found if isinstance(found, str) else None

    def of(self, path: str) -> str:
        """Where the value at "section.key" came from, for a message: "FILE:
        section.key", the CLI option, or for an array its first item's origin;
        the path itself when nothing is recorded."""
        found = self.get(path)
        if isinstance(found, list):
            found = found[0] if found else None
        if not found:
            return path
        if found.startswith("--") or ": " in found:
            return found
        return f"{found}: {path}"

    def item(self, path: str, index: int) -> str:
        """Where item `index` of the array at "section.key" came from."""
        return self.source(f"{path}[{index}]") or f"{path}[{index}]"

    def within(self, section: str, data: dict[str, object]) -> tuple[tuple[str, str], ...]:
        """The origin of every value of one section, keyed as its policy record keeps
        them (policy.Sourced): "deny[2]", "actions.ptrace", "action"."""
        found: dict[str, str] = {}
        for key, value in data.items():
            path = f"{section}.{key}"
            if isinstance(value, list):
                found.update((f"{key}[{i}]", self.item(path, i)) for i in range(len(value)))
            elif isinstance(value, dict):
                found.update((f"{key}.{name}", self.of(f"{path}.{name}")) for name in value)
            else:
                found[key] = self.of(path)
        return tuple(sorted(found.items()))


class Sourced(Record):
    """A policy part that remembers where its values came from.

    Each subclass declares `origins` as its last field, which pairs a key ("action", "deny[2]", "rlimits.nofile") with the
    profile line or option that set it, so a value refused long after loading
    (by the kernel, by the planner) still names its source.
    """

    #: The profile section, for keys no origin was recorded for.
    _section = ""

    def origin_of(self, key: str) -> str:
        return dict(self.origins).get(key, f"{self._section}.{key}")


class Namespaces(Record):
    """Which namespaces are new (True) or shared with the host (False); the
    fields are the names of NAMESPACES."""

    user: bool = True
    mount: bool = True
    pid: bool = True
    ipc: bool = True
    uts: bool = True
    net: bool = True
    cgroup: bool = True
    #: Processes inside may build sandboxes of their own (docs/security.md,
    #: "Nesting"): user namespaces, and mounts inside the namespaces they create;
    #: Landlock is off for the whole tree and /proc has nothing mounted over it.
    nested: bool = False


class Identity(Record):
    """Ids inside the sandbox; None means 'the caller's own id'."""

    uid: int | None = None
    gid: int | None = None
    map_all: bool = False


class MountOp(Record):
    """One filesystem operation; later ops are applied over earlier ones."""

    kind: str
    dest: str
    source: str | None = None
    optional: bool = False
    mode: int | None = None
    size: int | None = None
    content: str | None = None
    #: Overlay kinds: further lower layers beneath `source` (top first), the upper
    #: layer and overlayfs' work dir (host paths).
    lower: tuple[str, ...] = ()
    upper: str | None = None
    work: str | None = None
    #: bwrap's --bind-fd: `source` is the path of this fd (open in the caller, passed
    #: on); the bind fails unless the object opened at `source` is the fd's.
    source_fd: int | None = None
    origin: str = ""


class Environment(Record):
    """How the sandbox environment is derived from the caller's."""

    clear: bool = True
    keep: tuple[str, ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()


class Process(Record):
    hostname: str | None = None
    cwd: str | None = None
    argv0: str | None = None
    new_session: bool = True
    #: A pseudo-terminal of the sandbox's own: None decides from the caller's stdin.
    tty: bool | None = None
    die_with_parent: bool = True
    #: Run until the last process inside exits, not only the command (runtime/init.py).
    wait_all: bool = False
    pass_fds: tuple[int, ...] = ()
    #: Directories tried in order, by path and without a note, when the cwd is not
    #: visible inside; then PWD names where the command starts (bwrap's rule:
    #: `jailpy bwrap` sets the caller's cwd and $HOME).
    cwd_fallback: tuple[str, ...] = ()
    #: bwrap's --as-pid-1: the command itself is pid 1 of the new pid namespace.
    as_pid_1: bool = False
    #: bwrap's --lock-file: paths inside the sandbox that pid 1 read-locks (fcntl)
    #: while the sandbox lives.
    lock_files: tuple[str, ...] = ()
    #: bwrap's --block-fd: once the sandbox is built, wait for data (or EOF) on this
    #: fd before the command starts.
    block_fd: int | None = None
    #: bwrap mode: pid 1 becomes dumpable again once it holds no capability, so the
    #: caller can read /proc/PID/ns of the child-pid --info-fd reports (as bwrap's
    #: pid 1 is an ordinary process of the user; docs/bwrap.md).
    init_visible: bool = False
    #: bwrap's --userns FD / --pidns FD: join the namespace open at FD (in the caller)
    #: instead of making one (Namespaces then says user = False); --userns2 FD: switch
    #: to that user namespace once the root is built (docs/bwrap.md). Kept here, not
    #: in Namespaces, whose fields are the namespace kinds.
    userns_fd: int | None = None
    pidns_fd: int | None = None
    userns_fd_after: int | None = None
    #: bwrap's --userns-block-fd: jailpy writes no id maps for the new user
    #: namespace; the caller writes them (and whatever else it does from outside)
    #: while the run's on_unshared step holds the namespace child (docs/bwrap.md).
    ids_mapped_by_caller: bool = False
    #: Fds the supervisor writes to for its caller (bwrap's --info-fd and
    #: --json-status-fd): closed in the sandbox's processes, as bwrap's child closes
    #: them, so a reader sees EOF once the supervisor closes its own copy.
    host_only_fds: tuple[int, ...] = ()
    #: bwrap's --disable-userns: nothing inside may create a user namespace (the
    #: sandbox's max_user_namespaces is 1 and it runs in a nested user namespace,
    #: which cannot raise that limit); --assert-userns-disabled: fail unless
    #: creating one inside fails.
    userns_disabled: bool = False
    check_userns_disabled: bool = False


class Filesystem(Record):
    ops: tuple[MountOp, ...] = ()
    root_readonly: bool = True
    #: bwrap's rule for the parent directories an op creates: 0755 less the group's
    #: or others' bits the op's own mode lacks (runtime/mounts.py parent_mode).
    private_parents: bool = False


class Capabilities(Record):
    keep: tuple[str, ...] = ()


class SeccompPolicy(Sourced):
    """Seccomp settings (resolved to rules by plan/seccomp.py).

    Deny-list mode (default_action "allow") always refuses @default plus
    `deny`, minus the `allow` exceptions; allow-list mode (default_action
    "deny") permits `allow` minus `deny`. `origins` maps "deny[3]",
    "action", ... to the profile key or option that set them.
    """

    enabled: bool = True
    default_action: str = "allow"
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    action: str = "errno:EPERM"
    actions: tuple[tuple[str, str], ...] = ()
    allow_userns: bool = False
    #: namespaces.nested = true: allow_userns, plus the @mount calls @default
    #: refuses (the kernel confines them to namespaces the caller created).
    allow_nesting: bool = False
    block_tty_injection: bool = True
    bad_arch_action: str = "kill-process"
    #: Raw BPF programs (struct sock_filter arrays) loaded in order after jailpy's
    #: own filter: `jailpy bwrap --seccomp FD` / `--add-seccomp-fd FD` (docs/bwrap.md).
    programs: tuple[bytes, ...] = ()
    origins: tuple[tuple[str, str], ...] = ()
    _section = "seccomp"


class LandlockPolicy(Sourced):
    """Landlock settings (rules derived by plan/landlock.py).

    from_mounts derives filesystem rules from the mount plan; read/write/
    execute add paths; connect_tcp/bind_tcp = None leaves TCP unrestricted.
    """

    enabled: bool = True
    best_effort: bool = False
    from_mounts: bool = True
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    execute: tuple[str, ...] = ()
    connect_tcp: tuple[int, ...] | None = None
    bind_tcp: tuple[int, ...] | None = None
    scope_signals: bool = False
    scope_abstract_unix: bool = False
    origins: tuple[tuple[str, str], ...] = ()
    _section = "landlock"


class PortMapping(Record):
    """One published port: HOST_ADDR:HOST_PORT on the host -> SANDBOX_PORT inside."""

    proto: str
    host_addr: str
    host_port: int
    sandbox_port: int
    origin: str = ""


class Network(Sourced):
    """How the sandbox reaches the network (see docs/network.md)."""

    mode: str = "none"
    host_loopback: bool = False
    publish: tuple[PortMapping, ...] = ()
    allow_connect_tcp: tuple[int, ...] | None = None
    allow_bind_tcp: tuple[int, ...] | None = None
    best_effort: bool = False
    #: network.mode = "proxy": the host names (NAME, *.SUFFIX, [:PORT]) the proxy lets
    #: through, in their canonical spelling (profile/network.py).
    allow_hosts: tuple[str, ...] = ()
    #: Where the proxy logs every connection attempt as JSON lines ("-": stderr).
    egress_log: str | None = None
    #: (key, origin) of the port rules: the option or profile item that set them.
    origins: tuple[tuple[str, str], ...] = ()
    _section = "network"


#: Per-user kernel quotas a sandbox's user namespace carries for itself, by their
#: /proc/sys/user/max_<name> file. The kernel counts an object against every user
#: namespace up the chain, so a lower limit inside keeps a sandbox from taking
#: all of what the user's other programs share (docs/limits.md).
USER_QUOTAS = ("inotify_instances", "inotify_watches", "fanotify_groups", "fanotify_marks",
               "user_namespaces", "mnt_namespaces", "pid_namespaces", "net_namespaces",
               "ipc_namespaces", "uts_namespaces", "cgroup_namespaces", "time_namespaces")
#: What every sandbox gets unless its profile says otherwise: a quarter of the
#: usual per-user inotify allowance (128 instances), so programs outside keep theirs.
DEFAULT_QUOTAS: tuple[tuple[str, int], ...] = (("inotify_instances", 32),
                                               ("inotify_watches", 16384))


class Limits(Sourced):
    """Resource limits; see docs/limits.md for how each one is enforced.

    rlimits are (name, soft, hard) with resource.RLIM_INFINITY for "unlimited";
    cpus is CPU bandwidth in CPUs (quota = cpus * cpu_period); origins maps a
    key ("timeout", "memory_max", "rlimits.nofile", ...) to the profile line or
    option that set it, so a limit the runtime cannot apply names its source.
    """

    rlimits: tuple[tuple[str, int, int], ...] = ()
    timeout: float | None = None
    kill_grace: float = 5.0
    memory_max: int | None = None
    memory_swap_max: int | None = None
    pids_max: int | None = None
    cpus: float | None = None
    cpu_period: float = 0.1
    cgroup_parent: str | None = None
    best_effort: bool = False
    #: (USER_QUOTAS name, value) written in the sandbox's user namespace.
    quotas: tuple[tuple[str, int], ...] = DEFAULT_QUOTAS
    origins: tuple[tuple[str, str], ...] = ()
    _section = "limits"

    @property
    def cgroup_controllers(self) -> tuple[str, ...]:
        """The cgroup controllers these limits need, in a fixed order."""
        wanted = (("memory", self.memory_max is not None or self.memory_swap_max is not None),
                  ("pids", self.pids_max is not None), ("cpu", self.cpus is not None))
        return tuple(name for name, used in wanted if used)


class Workspace(Record):
    """The directory a build may write: bound read-write, the default cwd."""

    path: str | None = None
    origin: str = "workspace.path"


class Changes(Sourced):
    """Run over a copy of host directories and keep what was written for review
    (docs/overlays.md): each of `paths` (default: the caller's cwd) is overlaid,
    its upper layer kept in a run directory under `dir` (default: the user's
    state dir), on a tmpfs of `size` bytes when set."""

    enabled: bool = False
    paths: tuple[str, ...] = ()
    dir: str | None = None
    size: int | None = None
    review: bool = False
    origins: tuple[tuple[str, str], ...] = ()
    _section = "changes"


class DBusRules(Record):
    """xdg-dbus-proxy policy for one bus; everything not named is invisible."""

    see: tuple[str, ...] = ()
    talk: tuple[str, ...] = ()
    own: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    broadcast: tuple[str, ...] = ()


class Desktop(Sourced):
    """Desktop pieces passed into the sandbox; each is off unless asked for.

    See docs/desktop.md; the planner (plan/desktop.py) turns these into mount
    ops and environment entries, plus host steps for D-Bus proxies.
    """

    x11: bool = False
    x11_untrusted: bool = False
    wayland: bool = False
    pulseaudio: bool = False
    pipewire: bool = False
    dbus: bool = False
    dbus_rules: DBusRules = DBusRules()
    #: One of SYSTEM_BUS_MODES.
    dbus_system: str = "none"
    dbus_system_rules: DBusRules = DBusRules()
    gpu: bool = False
    fonts: bool = False
    themes: bool = False
    locale: bool = False
    #: (name, "rw" | "ro" | "none") for XDG user dirs such as downloads.
    user_dirs: tuple[tuple[str, str], ...] = ()
    #: The app's own state directories: bound read-write, created when missing.
    app_dirs: tuple[str, ...] = ()
    #: Pieces skipped (with a note) instead of failing when their socket is missing.
    optional: tuple[str, ...] = ()
    #: Origins of the keys, for error messages: key -> "file: desktop.key".
    origins: tuple[tuple[str, str], ...] = ()
    _section = "desktop"

    @property
    def enabled(self) -> bool:
        return any((self.x11, self.x11_untrusted, self.wayland, self.pulseaudio, self.pipewire,
                    self.dbus, self.dbus_system != "none", self.gpu, self.fonts, self.themes,
                    self.locale, self.user_dirs, self.app_dirs))


class Policy(Record):
    """Everything the runtime needs to build one sandbox, and nothing else."""

    namespaces: Namespaces = Namespaces()
    identity: Identity = Identity()
    filesystem: Filesystem = Filesystem()
    environment: Environment = Environment()
    process: Process = Process()
    capabilities: Capabilities = Capabilities()
    seccomp: SeccompPolicy = SeccompPolicy()
    landlock: LandlockPolicy = LandlockPolicy()
    network: Network = Network()
    limits: Limits = Limits()
    desktop: Desktop = Desktop()
    workspace: Workspace = Workspace()
    changes: Changes = Changes()
    name: str = "custom"


#: XDG user-dirs keys (user-dirs.dirs) and the variable names profiles use for them.
_USER_DIRS = {
    "DESKTOP": ("XDG_DESKTOP_DIR", "Desktop"), "DOWNLOADS": ("XDG_DOWNLOAD_DIR", "Downloads"),
    "DOCUMENTS": ("XDG_DOCUMENTS_DIR", "Documents"), "MUSIC": ("XDG_MUSIC_DIR", "Music"),
    "PICTURES": ("XDG_PICTURES_DIR", "Pictures"), "VIDEOS": ("XDG_VIDEOS_DIR", "Videos"),
    "TEMPLATES": ("XDG_TEMPLATES_DIR", "Templates"),
    "PUBLICSHARE": ("XDG_PUBLICSHARE_DIR", "Public"),
}


def _controlling_terminal(fd: int) -> bool:
    """fd is a terminal and the controlling terminal of this process's session:
    tcgetpgrp fails (ENOTTY) for a pipe, a file, or another session's terminal."""
    try:
        os.tcgetpgrp(fd)
    except OSError:
        return False
    return True


class Caller(Record):
    """Facts about the invoking process that a profile and a Plan depend on."""

    uid: int
    gid: int
    env: dict[str, str]
    cwd: str | None
    cwd_identity: tuple[int, int] | None = None
    #: Whether stdin is the caller's controlling terminal: a sandbox then gets a
    #: pseudo-terminal of its own (a terminal that is not the controlling one, as
    #: in a process started in a new session, has no job control to relay).
    terminal: bool = False

    @classmethod
    def current(cls) -> "Caller":
        try:
            cwd = os.getcwd()
            st = os.stat(cwd)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            cwd, identity = None, None
        return cls(os.getuid(), os.getgid(), dict(os.environ), cwd, identity,
                   _controlling_terminal(0))

    def variables(self) -> dict[str, str]:
        """The caller's places, by the ${NAME} profiles use for them (profile/expand.py),
        from the environment where it says, else from the passwd entry and XDG defaults."""
        env, uid = self.env, self.uid
        home, user = self._absolute("HOME"), env.get("USER")
        if home is None or not user:
            import pwd

            try:
                entry = pwd.getpwuid(uid)
                home, user = home or entry.pw_dir, user or entry.pw_name
            except KeyError:
                home, user = home or "/", user or str(uid)
        home = home.rstrip("/") or "/"
        base = "" if home == "/" else home
        config = self._absolute("XDG_CONFIG_HOME") or f"{base}/.config"
        variables = {
            "HOME": home, "USER": user, "UID": str(uid), "GID": str(self.gid),
            "CWD": self.cwd or "/",
            "XDG_RUNTIME_DIR": self._absolute("XDG_RUNTIME_DIR") or f"/run/user/{uid}",
            "XDG_CONFIG_HOME": config,
            "XDG_DATA_HOME": self._absolute("XDG_DATA_HOME") or f"{base}/.local/share",
            "XDG_CACHE_HOME": self._absolute("XDG_CACHE_HOME") or f"{base}/.cache",
            "TMPDIR": self._absolute("TMPDIR") or "/tmp",
        }
        variables.update(_user_dirs(home, config))
        return variables

    def _absolute(self, name: str) -> str | None:
        """$name when it is an absolute path (the XDG spec says to ignore relative ones)."""
        value = self.env.get(name) or ""
        return value if value.startswith("/") else None


def _user_dirs(home: str, config_home: str) -> dict[str, str]:
    """XDG user dirs from user-dirs.dirs (absolute or $HOME-relative values only),
    else the English defaults under home."""
    found: dict[str, str] = {}
    try:
        with open(os.path.join(config_home, "user-dirs.dirs"), encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                value = value.strip().strip('"').replace("$HOME", home)
                if sep and not key.startswith("#") and value.startswith("/"):
                    found[key] = value
    except (OSError, ValueError):  # unreadable, or not UTF-8: use the defaults
        pass
    base = "" if home == "/" else home
    return {name: found.get(key, f"{base}/{default}") for name, (key, default) in
            _USER_DIRS.items()}
