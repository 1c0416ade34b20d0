"""`jailpy check` rows for running inside another sandbox or container (a
nested user namespace, a /proc with mounts over parts of it, a seccomp filter
or no_new_privs already in force), and the --explain line for namespaces.nested.

docs/containers.md describes each case, its failure messages and its fix.
"""

from __future__ import annotations

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
    return [_userns_row(), _procfs_row(), _seccomp_row(status), _no_new_privs_row(status)]


def _status_fields() -> dict[str, str]:
    fields = {}
    for line in (read_value("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _userns_row() -> Check:
    uid_map = (read_value("/proc/self/uid_map") or "").split()
    if tuple(uid_map) == _IDENTITY_MAP:
        return Check("nesting", "user namespace", True, "the initial one (not nested)")
    limit = read_value("/proc/sys/user/max_user_namespaces")
    detail = (f"nested: inside a user namespace mapping {' '.join(uid_map) or '?'}; "
              f"max_user_namespaces here {limit}")
    return Check("nesting", "user namespace", True, detail)


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
            "docker/podman --security-opt systempaths=unconfined) or share its pid "
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

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 255
        try:
            sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWPID)
            inner = os.fork()
            if inner == 0:
                try:
                    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
                    sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV)
                    os._exit(0)
                except OSError as exc:
                    os._exit(100 + (exc.errno or 1))
            _, status = os.waitpid(inner, 0)
            code = os.waitstatus_to_exitcode(status)
        except OSError as exc:
            code = exc.errno or 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
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
