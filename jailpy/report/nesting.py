"""`jailpy check` rows for running inside another sandbox or container (a
nested user namespace, a /proc with mounts over parts of it, a seccomp filter
or no_new_privs already in force), and the --explain line for namespaces.nested.

docs/containers.md describes each case, its failure messages and its fix.
"""

from __future__ import annotations

import errno
import functools
import os

from .check import Check, read_value

#: The initial user namespace maps every id to itself.
_IDENTITY_MAP = ("0", "0", "4294967295")


def explain_sections(plan) -> list[tuple[str, list[str]]]:
    if not plan.nested:
        return []
    return [("nesting", ["processes inside may create user namespaces and mount, pivot_root "
                         "and mount a procfs in namespaces they create (namespaces.nested)",
                         "/proc has nothing mounted over it; Landlock is off (see security)"])]


def checks() -> list[Check]:
    status = _status_fields()
    return [_userns_row(), _procfs_row(), _proc_sys_row(), _hostname_row(),
            _seccomp_row(status), _no_new_privs_row(status)]


def proc_sys_read_only() -> bool:
    """An outer sandbox or container mounted /proc/sys read-only (the quotas'
    files are then read-only in every user namespace below it)."""
    try:
        return bool(os.statvfs("/proc/sys/user").f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _proc_sys_row() -> Check:
    if not proc_sys_read_only():
        return Check("nesting", "/proc/sys/user", True,
                     "writable: each sandbox sets its own quotas (limits.quotas)")
    return Check("nesting", "/proc/sys/user", True,
                 "read-only (an outer sandbox or container): jailpy's default quotas are "
                 "skipped with a warning; a quota a profile sets fails the run")


def _hostname_row() -> Check:
    """Whether a new UTS namespace may be named here (Podman's and Docker's default
    seccomp profiles refuse sethostname even there)."""
    refused, error = _hostname_probe()
    if refused is not None:
        return Check("nesting", "hostname", False, "not tried: unshare(user, uts) failed: "
                     f"{os.strerror(refused)}", needed=_wants_hostname)
    if error is None:
        return Check("nesting", "hostname", True, "a new UTS namespace can be named here",
                     needed=_wants_hostname)
    return Check("nesting", "hostname", False,
                 f"sethostname in a new user+UTS namespace failed: {os.strerror(error)}",
                 "share the UTS namespace (--share-uts), or lift the outer filter "
                 "(docs/containers.md)", needed=_wants_hostname)


@functools.cache
def _hostname_probe() -> tuple[int | None, int | None]:
    """(errno of unshare(user, uts), errno of sethostname there); once per process,
    like _levels_left."""
    from ..linux import syscalls as sc

    def new_uts() -> None:
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWUTS)

    def name_one() -> None:
        new_uts()
        sc.sethostname("jailpy")

    refused = _in_child(new_uts)
    return refused, None if refused is not None else _in_child(name_one)


def _wants_hostname(plan) -> bool:
    return plan.hostname is not None


def _in_child(action) -> int | None:
    """Run action in a throwaway child: None if it worked, else the errno."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 255
        try:
            action()
            code = 0
        except OSError as exc:
            code = exc.errno or 255
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else code


def _status_fields() -> dict[str, str]:
    fields = {}
    for line in (read_value("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _userns_row() -> Check:
    """How deep in user namespaces jailpy runs and how many more levels it may nest.

    A process cannot see the user namespaces above its own (NS_GET_PARENT stops at
    the caller's, the uid map only relates it to its parent), so the depth is
    counted from below: a throwaway child nests user namespaces until the kernel
    refuses, and depth = MAX_USERNS_LEVEL - levels it made. The kernel answers
    ENOSPC both at its depth limit and when a max_user_namespaces quota above is
    used up; one level up, a second namespace needs the same quota but not the
    extra depth, so when that one is refused too, the quota is what stopped the
    count and the depth is only bounded. docs/containers.md."""
    uid_map = (read_value("/proc/self/uid_map") or "").split()
    initial = tuple(uid_map) == _IDENTITY_MAP
    levels, stopped_by = _levels_left()
    quotas = ", ".join(f"{name} {read_value(f'/proc/sys/user/max_{name}') or '?'}"
                       for name in ("user_namespaces", "mnt_namespaces", "pid_namespaces"))
    where = ("the initial user namespace" if initial else
             f"nested: the uid map here is {' '.join(uid_map) or '?'}")
    if initial:
        depth = "depth 0"
    elif stopped_by is None:
        depth = f"depth {MAX_USERNS_LEVEL - levels}"
    elif stopped_by == _QUOTA:
        depth = f"depth at most {MAX_USERNS_LEVEL - levels}"
    else:
        depth = "depth unknown (at least 1)"
    more = f"{levels} more levels allowed: " + (
        f"the kernel nests at most {MAX_USERNS_LEVEL}" if stopped_by is None else stopped_by)
    return Check("nesting", "user namespace", True,
                 f"{depth}, {where}; {more}; quotas here: {quotas}")


#: The deepest user namespace the kernel creates: the initial one is level 0 and a
#: new one is refused (ENOSPC) when its parent is deeper than 32
#: (kernel/user_namespace.c, create_user_ns); 33 below the initial one, measured.
MAX_USERNS_LEVEL = 33
_QUOTA = "then a max_user_namespaces quota above this namespace refused (ENOSPC)"


@functools.cache
def _levels_left() -> tuple[int, str | None]:
    """(levels, what stopped the count: None for the kernel's depth limit).

    Counted once per process (a program calling `jailpy run --explain` in-process
    many times, like the fuzz tests, pays once): the answer only changes when this
    process enters another user namespace, which jailpy's own process never does."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        try:
            levels, stopped_by = _descend()
            os.write(write_end, f"{levels} {stopped_by or ''}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    count, _, stopped_by = answer.partition(" ")
    if not count.isdigit():
        return 0, "the count failed"
    return int(count), stopped_by or None


def _descend() -> tuple[int, str | None]:
    """Nest user namespaces in this process until refused, leaving a process
    behind in each level (to try the second namespace one level up)."""
    from ..linux import syscalls as sc

    holders: list[tuple[int, int]] = []
    levels = 0
    try:
        while levels <= MAX_USERNS_LEVEL:
            holders.append(_holder(sc))
            try:
                _enter_user_namespace(sc)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    return levels, (f"then unshare(CLONE_NEWUSER) is refused here "
                                    f"({os.strerror(exc.errno or 0)}: a seccomp filter, a "
                                    "sysctl or an LSM)")
                break
            levels += 1
        if levels == 0:
            return 0, ("unshare(CLONE_NEWUSER) is refused with ENOSPC (the depth limit or a "
                       "quota above)")
        return levels, None if _sibling_allowed(holders.pop(-2)) else _QUOTA
    finally:
        for pid, ask in holders:
            os.close(ask)
            os.waitpid(pid, 0)


def _holder(sc) -> tuple[int, int]:
    """A child left in the current user namespace: told "t", it tries to create
    one more there and exits 0 if it could; at EOF it just exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.dup2(read_end, 3)  # keep nothing else: the other pipes must see EOF
            os.closerange(4, 1 << 20)
            if os.read(3, 1) == b"t":
                sc.unshare(sc.CLONE_NEWUSER)
            code = 0
        finally:
            os._exit(code)
    os.close(read_end)
    return pid, write_end


def _sibling_allowed(holder: tuple[int, int]) -> bool:
    pid, ask = holder
    os.write(ask, b"t")
    _, status = os.waitpid(pid, 0)
    os.close(ask)
    return os.waitstatus_to_exitcode(status) == 0


def _enter_user_namespace(sc) -> None:
    """One level down, mapping the current ids to root there (so the next may follow)."""
    uid, gid = os.geteuid(), os.getegid()
    sc.unshare(sc.CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _procfs_row() -> Check:
    """Whether a sandbox with its own pid namespace can mount its /proc here:
    tried for real, in a throwaway child, the way the runtime does it."""
    failure = _procfs_probe()
    covered = _covered_proc()
    if failure is None:
        return Check("nesting", "new procfs", True,
                     "a user namespace here can mount a procfs of its own", needed=_wants_proc)
    detail = failure + (f"; /proc here has mounts over {', '.join(covered)}" if covered else "")
    hint = ("run the outer sandbox with a bare /proc (jailpy --allow-nesting, bwrap --proc, "
            "docker --security-opt systempaths=unconfined, podman --security-opt "
            "unmask=ALL) or share its pid "
            "namespace (--share-pid) so the outer /proc is bound instead")
    if failure.startswith("unshare"):
        hint = ("namespaces are refused here (a seccomp filter, a sysctl or an LSM): inside "
                "jailpy use --allow-nesting; inside a container see docs/containers.md")
    return Check("nesting", "new procfs", False, detail, hint, needed=_wants_proc)


def _wants_proc(plan) -> bool:
    return plan.new_pid_ns and any(op.kind == "proc" for op in plan.mount_ops)


def _covered_proc() -> list[str]:
    """Mount points below a procfs mount (what makes it not fully visible)."""
    procs, points = [], []
    for line in (read_value("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        points.append(fields[4])
        if fstype == "proc":
            procs.append(fields[4])
    return sorted({p for p in points for top in procs if p.startswith(top.rstrip("/") + "/")})


def _procfs_probe() -> str | None:
    """None if a new user+mount+pid namespace can mount a procfs, else why not."""
    from ..linux import syscalls as sc

    def mount_proc() -> None:  # the new pid namespace's first process
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
        sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV)

    def in_new_namespaces() -> None:
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWPID)
        refused = _in_child(mount_proc)
        if refused is not None:
            os._exit(100 + refused)

    code = _in_child(in_new_namespaces) or 0
    if code == 0:
        return None
    if code > 100:
        return f"mount(proc) in a new user+pid namespace failed: {os.strerror(code - 100)}"
    return f"unshare(user, mount, pid) failed: {os.strerror(code)}"


def _seccomp_row(status: dict[str, str]) -> Check:
    mode = status.get("Seccomp", "?")
    if mode == "0":
        return Check("nesting", "seccomp filter in force", True, "none")
    count = status.get("Seccomp_filters", "?")
    return Check("nesting", "seccomp filter in force", True,
                 f"yes ({count} filters, mode {mode}): what they refuse stays refused in every "
                 "sandbox started here, whatever its profile allows")


def _no_new_privs_row(status: dict[str, str]) -> Check:
    if status.get("NoNewPrivs") != "1":
        return Check("nesting", "no_new_privs", True, "not set (jailpy sets it for its sandboxes)")
    return Check("nesting", "no_new_privs", True,
                 "already set: set-id programs do not gain privileges here either (jailpy "
                 "needs none; newuidmap for --map-all then fails)")
