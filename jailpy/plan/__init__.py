"""Policy -> Plan: everything decided before the first syscall.

The Plan is ordered, pure data computed from a Policy, the command line and
facts about the caller (ids, environment, cwd), and it is the runtime's whole
input: the runtime never sees the Policy. Keeping the decisions here means
tests can check what a sandbox *will* do without a kernel, and the runtime
stays a straight-line executor.

    __init__.py   Plan, Caller, build_plan: namespaces, ids, env, cwd, process
    workspace.py  the writable workspace's mount ops and cwd
    desktop.py    display, audio, D-Bus, GPU pieces: mount ops, env, host-side specs
    network.py    the helpers' address plan and the generated /etc files
    changes.py    `--changes`: overlays kept for review, jailpy's state dirs hidden
    landlock.py   Landlock rules derived from the mount ops; seccomp.py the filter's rules
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from ..linux import syscalls as sc
# Caller is re-exported: `from jailpy.plan import Caller` is how callers build one.
from ..policy import (BIND_KINDS, HELPER_MODES, NAMESPACES, PROXY_MODE,  # noqa: F401
                      Caller, Limits, MountOp, Network, Policy, SeccompPolicy)
from ..record import Record
from .landlock import LandlockRules, derive as derive_landlock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .changes import ChangesPlan
    from .desktop import DesktopPlan


class Plan(Record):
    """The ordered set-up a sandbox goes through, as data."""

    #: The profile's name, for what is printed about the plan.
    profile: str
    argv: tuple[str, ...]
    unshare_flags: int
    uid_inside: int
    gid_inside: int
    uid_outside: int
    gid_outside: int
    map_all: bool
    mount_ops: tuple[MountOp, ...]
    root_readonly: bool
    env: dict[str, str]
    cwd: str | None
    cwd_identity: tuple[int, int] | None
    hostname: str | None
    new_session: bool
    die_with_parent: bool
    wait_all: bool
    pass_fds: tuple[int, ...]
    argv0: str | None
    #: Process.cwd_fallback: tried when cwd is not visible; PWD then set (bwrap mode).
    cwd_fallback: tuple[str, ...] = ()
    keep_caps: tuple[str, ...] = ()
    #: The seccomp section as written: the runtime compiles it (or finds it in
    #: the cache) on the host, keyed by this record.
    seccomp: SeccompPolicy = SeccompPolicy()
    #: Landlock rules derived from mount_ops and the profile (None: Landlock off).
    landlock: LandlockRules | None = None
    limits: Limits = Limits()
    #: (name, value) for /proc/sys/user/max_<name> in the sandbox's user namespace.
    quotas: tuple[tuple[str, int], ...] = ()
    #: The names in quotas that are jailpy's defaults, not the profile's: where an
    #: outer sandbox or container made /proc/sys read-only they are skipped with
    #: a warning; a quota the profile asked for fails the run (docs/limits.md).
    default_quotas: tuple[str, ...] = ()
    network: Network = Network()
    #: The helper that connects the sandbox's network namespace (a HELPER_MODES
    #: entry: slirp4netns, pasta; or PROXY_MODE: jailpy's egress proxy), None when
    #: nothing is started.
    network_helper: str | None = None
    #: The network namespace belongs to a user namespace around the sandbox's own,
    #: with the caller as id 0 (slirp4netns, pasta, the proxy; runtime/launcher.py).
    outer_userns: bool = False
    #: Desktop pieces (plan/desktop.py); their ops and env are already part of
    #: mount_ops and env, this keeps the host-side specs and notes.
    desktop: "DesktopPlan | None" = None
    #: `--changes` (plan/changes.py): the run directory kept for review; its overlay
    #: ops are already part of mount_ops.
    changes: "ChangesPlan | None" = None
    #: The sandbox gets a pseudo-terminal of its own (runtime/tty.py).
    tty: bool = False
    #: namespaces.nested: processes inside may build sandboxes (docs/security.md).
    nested: bool = False
    #: bwrap mode (policy.Process, policy.Namespaces): the command as pid 1, files
    #: pid 1 read-locks, namespaces joined by fd, nested user namespaces refused.
    as_pid_1: bool = False
    lock_files: tuple[str, ...] = ()
    block_fd: int | None = None
    #: Filesystem.private_parents (bwrap mode).
    private_parents: bool = False
    init_visible: bool = False
    userns_fd: int | None = None
    userns_fd_after: int | None = None
    pidns_fd: int | None = None
    ids_mapped_by_caller: bool = False
    host_only_fds: tuple[int, ...] = ()
    userns_disabled: bool = False
    check_userns_disabled: bool = False

    def unshares(self, namespace: str) -> bool:
        """Whether the sandbox gets its own `namespace` ("user", "mount", "net", ...)."""
        return bool(self.unshare_flags & NAMESPACES[namespace])

    @property
    def new_pid_ns(self) -> bool:
        return bool(self.unshare_flags & sc.CLONE_NEWPID)

    @property
    def new_mount_ns(self) -> bool:
        return bool(self.unshare_flags & sc.CLONE_NEWNS)


def sandbox_environment(policy: Policy, caller_env: dict[str, str]) -> dict[str, str]:
    """Apply clear/keep/unset/set, in that order, to the caller's environment."""
    spec = policy.environment
    if spec.clear:
        env = {}
        patterns = [k for k in spec.keep if any(c in k for c in "*?[")]
        for name in spec.keep:
            if name in caller_env:
                env[name] = caller_env[name]
        if patterns:
            for name, value in caller_env.items():
                if any(_glob_match(name, p) for p in patterns):
                    env[name] = value
    else:
        env = dict(caller_env)
    for name in spec.unset:
        env.pop(name, None)
    env.update(spec.set)
    return env


def _glob_match(name: str, pattern: str) -> bool:
    """fnmatch semantics; the common `PREFIX*` form without importing re."""
    head = pattern[:-1]
    if pattern.endswith("*") and not any(c in head for c in "*?["):
        return name.startswith(head)
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)


def build_plan(policy: Policy, argv: list[str] | tuple[str, ...], caller: Caller,
               written: tuple[str, ...] = ()) -> Plan:
    """Decide everything about one sandbox run; makes no syscalls.

    `written`: files this run of jailpy writes (a --json-status file), kept
    read-only inside like the rest of jailpy's own state."""
    flags = 0
    for name, flag in NAMESPACES.items():
        if getattr(policy.namespaces, name):
            flags |= flag
    ident = policy.identity
    uid_inside = caller.uid if ident.uid is None else ident.uid
    gid_inside = caller.gid if ident.gid is None else ident.gid
    # An explicit cwd must exist inside; the caller's cwd is used only when
    # the very same directory is visible inside (checked by identity).
    explicit_cwd = policy.process.cwd
    ws_ops, ws_cwd = (), None
    if policy.workspace.path is not None:
        from .workspace import workspace_ops

        ws_ops, ws_cwd = workspace_ops(policy, caller)
        if ws_cwd != caller.cwd:
            explicit_cwd = explicit_cwd or ws_cwd
    mount_ops, desktop = policy.filesystem.ops + ws_ops, None
    env = sandbox_environment(policy, caller.env)
    if policy.desktop.enabled:
        from .desktop import plan_desktop

        desktop = plan_desktop(policy.desktop, caller, uid_inside, mount_ops)
        mount_ops += desktop.mount_ops
        explicit = {name for name, _ in policy.environment.set}
        env.update((k, v) for k, v in desktop.env if k not in explicit)
    mount_ops += _network_files(policy, mount_ops)
    changes = None
    if policy.changes.enabled:
        from .changes import plan_changes

        changes, changes_ops = plan_changes(policy, caller)
        mount_ops += changes_ops
        # An overlay is a different file system than the directory beneath it, so the
        # identity check would send the command to /: the overlaid cwd is the caller's.
        if caller.cwd and any(caller.cwd == p or caller.cwd.startswith(p.rstrip("/") + "/")
                              for p in changes.paths):
            explicit_cwd = explicit_cwd or caller.cwd
    helper = (policy.network.mode
              if policy.network.mode in (*HELPER_MODES, PROXY_MODE) and policy.namespaces.net
              else None)
    if helper == PROXY_MODE:
        from .network import proxy_environment

        env.update(proxy_environment())
        if policy.network.egress_log not in (None, "-"):
            written += (policy.network.egress_log,)
    # A profile's `hide` wins over everything bound after it (the desktop pieces, the
    # network files), as firejail's blacklist does: hides go last, before the guards.
    mount_ops = (*(op for op in mount_ops if op.kind != "hide"),
                 *(op for op in mount_ops if op.kind == "hide"))
    if policy.namespaces.mount:
        mount_ops += guard_ops(mount_ops, caller, written)
    return Plan(
        profile=policy.name,
        argv=tuple(argv),
        unshare_flags=flags,
        uid_inside=uid_inside,
        gid_inside=gid_inside,
        uid_outside=caller.uid,
        gid_outside=caller.gid,
        map_all=ident.map_all,
        mount_ops=mount_ops,
        root_readonly=policy.filesystem.root_readonly,
        private_parents=policy.filesystem.private_parents,
        env=env,
        cwd=explicit_cwd or caller.cwd,
        cwd_identity=None if explicit_cwd else caller.cwd_identity,
        hostname=policy.process.hostname if policy.namespaces.uts else None,
        new_session=policy.process.new_session,
        die_with_parent=policy.process.die_with_parent,
        wait_all=policy.process.wait_all,
        pass_fds=policy.process.pass_fds,
        argv0=policy.process.argv0,
        cwd_fallback=policy.process.cwd_fallback,
        keep_caps=policy.capabilities.keep,
        seccomp=policy.seccomp,
        landlock=derive_landlock(policy, mount_ops),
        limits=policy.limits,
        quotas=policy.limits.quotas if policy.namespaces.user else (),
        default_quotas=_default_quotas(policy.limits),
        network=policy.network,
        network_helper=helper,
        outer_userns=helper is not None and policy.namespaces.user and not ident.map_all,
        desktop=desktop,
        changes=changes,
        tty=_terminal(policy, caller),
        nested=policy.namespaces.nested,
        as_pid_1=policy.process.as_pid_1,
        lock_files=policy.process.lock_files,
        block_fd=policy.process.block_fd,
        init_visible=policy.process.init_visible,
        userns_fd=policy.process.userns_fd,
        userns_fd_after=policy.process.userns_fd_after,
        pidns_fd=policy.process.pidns_fd,
        ids_mapped_by_caller=policy.process.ids_mapped_by_caller,
        host_only_fds=policy.process.host_only_fds,
        userns_disabled=policy.process.userns_disabled,
        check_userns_disabled=policy.process.check_userns_disabled,
    )


def _default_quotas(limits: Limits) -> tuple[str, ...]:
    """Quotas no profile layer set (limits.origins names every one that did)."""
    given = dict(limits.origins)
    return tuple(name for name, _ in limits.quotas if f"quotas.{name}" not in given)


def _terminal(policy: Policy, caller: Caller) -> bool:
    """A pseudo-terminal of the sandbox's own when asked for, or by default when
    stdin is a terminal; --no-new-session keeps the host terminal itself."""
    wanted, new_session = policy.process.tty, policy.process.new_session
    if wanted is None:
        return caller.terminal and new_session
    if wanted and not new_session:
        raise ConfigError("a pseudo-terminal of the sandbox's own needs a new session",
                          origin="process.tty / --tty",
                          hint="leave out --no-new-session, or leave out --tty to share the host "
                               "terminal itself")
    if wanted and not caller.terminal:
        raise ConfigError("stdin is not jailpy's controlling terminal",
                          origin="process.tty / --tty",
                          hint="run it from a terminal, or leave --tty out")
    return wanted


def _resolved(path: str) -> str:
    """os.path.realpath(path) in three syscalls rather than an lstat per component
    (this runs for every bind on every `jailpy run`): the kernel's own resolution,
    read back from /proc/self/fd; a missing path is its resolved parent's child."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        parent, name = os.path.split(os.path.normpath(path))
        return os.path.join(_resolved(parent), name) if parent != path else path
    except OSError:
        return os.path.realpath(path)
    try:
        resolved = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        resolved = os.path.realpath(path)
    finally:
        os.close(fd)
    return resolved if resolved.startswith("/") else os.path.realpath(path)


def _relative(path: str, top: str) -> str | None:
    """path relative to top ("" for top itself), None when it lies outside."""
    if top == "/":
        return path.lstrip("/")
    if path == top:
        return ""
    return path[len(top) + 1:] if path.startswith(top + "/") else None


def guard_ops(ops: tuple[MountOp, ...], caller: Caller, written: tuple[str, ...] = ()
              ) -> tuple[MountOp, ...]:
    """The trust boundary (docs/security.md): jailpy's own state, wherever a bind
    op makes it visible inside, hidden or read-only after every profile op.

    A bind of a parent (`--bind ~ ~`, `/` read-only, a workspace holding
    $XDG_CACHE_HOME) gets the op at the state's place under its destination,
    a bind of something inside the state gets it on its destination. Host paths
    are compared resolved, as the runtime resolves bind sources."""
    from ..usercache import own_state

    state = [(_resolved(path), how) for path, how in own_state(caller.env, caller.uid, written)]
    guards: dict[str, MountOp] = {}
    for op in ops:
        if op.kind not in BIND_KINDS or op.source is None:
            continue
        source = _resolved(op.source)
        for path, how in state:
            below = _relative(path, source)
            if below is not None:  # the bind shows the state at its place under dest
                dest = os.path.join(op.dest, below) if below else op.dest
            elif _relative(source, path) is not None:  # the bind shows a part of it
                dest = op.dest
            else:
                continue
            dest = os.path.normpath(dest)
            guards[dest] = MountOp(kind="hide" if how == "hide" else "protect", dest=dest,
                                   origin=f"jailpy's own state: {path}")
    return tuple(guards.values())


def _network_files(policy: Policy, ops: tuple[MountOp, ...]) -> tuple[MountOp, ...]:
    """Generated /etc/resolv.conf and /etc/hosts when a network helper is used."""
    if policy.network.mode not in (*HELPER_MODES, PROXY_MODE):
        return ()
    from .network import generated_files

    hostname = policy.process.hostname if policy.namespaces.uts else None
    return generated_files(policy, hostname or os.uname().nodename, ops)
