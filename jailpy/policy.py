"""The resolved Policy: the one contract between configuration and runtime.

Profiles, CLI options and the Python API all produce a Policy; the planner and
the runtime consume nothing else. Every field is plain data (frozen, hashable
where it matters) so a Policy can be printed, compared and cached, and every
mount op remembers its origin so runtime failures can name the profile key or
option that asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Mount operation kinds, in the vocabulary of profiles and CLI options.
MOUNT_KINDS = (
    "bind", "ro-bind", "dev-bind", "tmpfs", "proc", "dev", "mqueue",
    "symlink", "dir", "file", "remount-ro", "chmod",
)
#: Kinds that take a host source path.
BIND_KINDS = ("bind", "ro-bind", "dev-bind")


@dataclass(frozen=True)
class Namespaces:
    """Which namespaces are new (True) or shared with the host (False)."""

    user: bool = True
    mount: bool = True
    pid: bool = True
    ipc: bool = True
    uts: bool = True
    net: bool = True
    cgroup: bool = True


@dataclass(frozen=True)
class Identity:
    """Ids inside the sandbox; None means 'the caller's own id'."""

    uid: int | None = None
    gid: int | None = None
    map_all: bool = False


@dataclass(frozen=True)
class MountOp:
    """One filesystem operation; later ops are applied over earlier ones."""

    kind: str
    dest: str
    source: str | None = None
    optional: bool = False
    mode: int | None = None
    size: int | None = None
    content: str | None = None
    origin: str = ""


@dataclass(frozen=True)
class Environment:
    """How the sandbox environment is derived from the caller's."""

    clear: bool = True
    keep: tuple[str, ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()


@dataclass(frozen=True)
class Process:
    hostname: str | None = None
    cwd: str | None = None
    argv0: str | None = None
    new_session: bool = True
    die_with_parent: bool = True
    pass_fds: tuple[int, ...] = ()


@dataclass(frozen=True)
class Filesystem:
    ops: tuple[MountOp, ...] = ()
    root_readonly: bool = True


@dataclass(frozen=True)
class Capabilities:
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeccompPolicy:
    """Seccomp settings; enabled=False means no filter is installed."""

    enabled: bool = False
    default_action: str = "allow"
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    action: str = "errno:EPERM"
    allow_userns: bool = True
    block_tty_injection: bool = True
    bad_arch_action: str = "kill-process"


@dataclass(frozen=True)
class LandlockPolicy:
    enabled: bool = False
    best_effort: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    execute: tuple[str, ...] = ()
    connect_tcp: tuple[int, ...] | None = None
    bind_tcp: tuple[int, ...] | None = None
    scope_signals: bool = False
    scope_abstract_unix: bool = False


@dataclass(frozen=True)
class Network:
    mode: str = "none"
    host_loopback: bool = False
    publish: tuple[str, ...] = ()
    allow_connect_tcp: tuple[int, ...] | None = None
    allow_bind_tcp: tuple[int, ...] | None = None
    best_effort: bool = False


@dataclass(frozen=True)
class Limits:
    rlimits: tuple[tuple[str, int, int], ...] = ()
    timeout: float | None = None
    kill_grace: float = 5.0
    memory_max: int | None = None
    memory_swap_max: int | None = None
    pids_max: int | None = None
    cpu_quota: float | None = None
    best_effort: bool = False


@dataclass(frozen=True)
class Desktop:
    x11: bool = False
    x11_untrusted: bool = False
    wayland: bool = False
    pulseaudio: bool = False
    pipewire: bool = False
    dbus: bool = False
    gpu: bool = False


@dataclass(frozen=True)
class Policy:
    """Everything the runtime needs to build one sandbox, and nothing else."""

    namespaces: Namespaces = field(default_factory=Namespaces)
    identity: Identity = field(default_factory=Identity)
    filesystem: Filesystem = field(default_factory=Filesystem)
    environment: Environment = field(default_factory=Environment)
    process: Process = field(default_factory=Process)
    capabilities: Capabilities = field(default_factory=Capabilities)
    seccomp: SeccompPolicy = field(default_factory=SeccompPolicy)
    landlock: LandlockPolicy = field(default_factory=LandlockPolicy)
    network: Network = field(default_factory=Network)
    limits: Limits = field(default_factory=Limits)
    desktop: Desktop = field(default_factory=Desktop)
    name: str = "custom"
