"""The resolved Policy: the one contract between configuration and runtime.

Profiles, CLI options and the Python API all produce a Policy; the planner and
the runtime consume nothing else. Every field is plain data (frozen, hashable
where it matters) so a Policy can be printed, compared and cached, and every
mount op remembers its origin so runtime failures can name the profile key or
option that asked for it.
"""

from __future__ import annotations

from .record import Record

#: Mount operation kinds, in the vocabulary of profiles and CLI options.
MOUNT_KINDS = (
    "bind", "ro-bind", "dev-bind", "tmpfs", "proc", "dev", "mqueue",
    "symlink", "dir", "file", "remount-ro", "chmod",
)
#: Kinds that take a host source path.
BIND_KINDS = ("bind", "ro-bind", "dev-bind")
#: Kinds jailpy generates itself and profiles cannot name: "ro-bind-data" (a
#: read-only file with `content` bound over `dest`; netspec.generated_files).
GENERATED_KINDS = ("ro-bind-data",)


class Namespaces(Record):
    """Which namespaces are new (True) or shared with the host (False)."""

    user: bool = True
    mount: bool = True
    pid: bool = True
    ipc: bool = True
    uts: bool = True
    net: bool = True
    cgroup: bool = True


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
    die_with_parent: bool = True
    pass_fds: tuple[int, ...] = ()


class Filesystem(Record):
    ops: tuple[MountOp, ...] = ()
    root_readonly: bool = True


class Capabilities(Record):
    keep: tuple[str, ...] = ()


class SeccompPolicy(Record):
    """Seccomp settings (resolved to rules by jailpy/seccomp_rules.py).

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
    block_tty_injection: bool = True
    bad_arch_action: str = "kill-process"
    origins: tuple[tuple[str, str], ...] = ()


class LandlockPolicy(Record):
    """Landlock settings (rules derived by jailpy/landlock_rules.py).

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


class PortMapping(Record):
    """One published port: HOST_ADDR:HOST_PORT on the host -> SANDBOX_PORT inside."""

    proto: str
    host_addr: str
    host_port: int
    sandbox_port: int
    origin: str = ""


class Network(Record):
    """How the sandbox reaches the network (see docs/network.md)."""

    mode: str = "none"
    host_loopback: bool = False
    publish: tuple[PortMapping, ...] = ()
    allow_connect_tcp: tuple[int, ...] | None = None
    allow_bind_tcp: tuple[int, ...] | None = None
    best_effort: bool = False
    #: (key, origin) of the port rules: the option or profile item that set them.
    origins: tuple[tuple[str, str], ...] = ()


class Limits(Record):
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
    origins: tuple[tuple[str, str], ...] = ()

    @property
    def cgroup_controllers(self) -> tuple[str, ...]:
        """The cgroup controllers these limits need, in a fixed order."""
        wanted = (("memory", self.memory_max is not None or self.memory_swap_max is not None),
                  ("pids", self.pids_max is not None), ("cpu", self.cpus is not None))
        return tuple(name for name, used in wanted if used)

    def origin_of(self, key: str) -> str:
        return dict(self.origins).get(key, f"limits.{key}")


class Workspace(Record):
    """The directory a build may write: bound read-write, the default cwd."""

    path: str | None = None
    origin: str = "workspace.path"


class DBusRules(Record):
    """xdg-dbus-proxy policy for one bus; everything not named is invisible."""

    see: tuple[str, ...] = ()
    talk: tuple[str, ...] = ()
    own: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    broadcast: tuple[str, ...] = ()


class Desktop(Record):
    """Desktop pieces passed into the sandbox; each is off unless asked for.

    See jailpy/desktop/ and docs/desktop.md; the planner turns these into
    mount ops and environment entries, plus host steps for D-Bus proxies.
    """

    x11: bool = False
    x11_untrusted: bool = False
    wayland: bool = False
    pulseaudio: bool = False
    pipewire: bool = False
    dbus: bool = False
    dbus_rules: DBusRules = DBusRules()
    #: "none" or "filtered".
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

    @property
    def enabled(self) -> bool:
        return any((self.x11, self.x11_untrusted, self.wayland, self.pulseaudio, self.pipewire,
                    self.dbus, self.dbus_system != "none", self.gpu, self.fonts, self.themes,
                    self.locale, self.user_dirs, self.app_dirs))

    def origin(self, key: str) -> str:
        return dict(self.origins).get(key, f"desktop.{key}")


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
    name: str = "custom"
