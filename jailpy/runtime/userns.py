"""UID/GID maps for the sandbox's user namespace.

The common case (one id mapped) needs no helper: a process may map its own
id in a namespace it just created, so the child writes its own maps and no
round trip to the supervisor is needed. Mapping a whole subordinate range
(--map-all) needs the setuid helpers newuidmap/newgidmap, run by the supervisor:

    prepare(plan)      supervisor, before fork: the helpers and the caller's
                       ranges exist (else a SetupError with a hint)
    host_step(pid)     supervisor, once the child has unshared: newuidmap, newgidmap
    apply(...)         namespace child: map its own ids (the one-id case)
"""

from __future__ import annotations

import errno
import os
import pwd

from ..errors import SetupError
from ..linux import syscalls as sc
from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan import Plan

_HINT_UIDMAP = ("install the 'uidmap' package and give the user a range in /etc/subuid and "
                "/etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)")


class SubordinateRange(Record):
    start: int
    count: int


def subordinate_range(path: str, uid: int) -> SubordinateRange | None:
    """The caller's first range in /etc/subuid or /etc/subgid, matched by name or id."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (name, str(uid)):
                    return SubordinateRange(int(parts[1]), int(parts[2]))
    except (OSError, ValueError):
        return None
    return None


def full_range_lines(inside: int, outside: int, sub: SubordinateRange) -> list[str]:
    """Map `inside` to the caller's id and surround it with the subordinate range."""
    lines = [f"{inside} {outside} 1"]
    below = min(inside, sub.count)
    if below:
        lines.append(f"0 {sub.start} {below}")
    above = sub.count - below
    if above:
        lines.append(f"{inside + 1} {sub.start + below} {above}")
    return lines


def apply(uid_inside: int, uid_outside: int, gid_inside: int, gid_outside: int,
          proc: int | None = None) -> None:
    """Map exactly the caller's ids; setgroups is denied, as the kernel requires.
    `proc`: a directory fd of a procfs, for a process whose /proc is gone."""
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid_inside} {uid_outside} 1"),
                           ("gid_map", f"{gid_inside} {gid_outside} 1")):
            path = f"self/{name}" if proc is not None else f"/proc/self/{name}"
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    except OSError as exc:
        raise SetupError(f"cannot write the id maps: {exc.strerror}", origin="user namespace",
                         hint="check that unprivileged user namespaces are enabled "
                         "(jailpy check)") from exc


def join(fd: int, option: str) -> None:
    """Enter the user namespace open at fd (bwrap's --userns, --userns2)."""
    try:
        sc.setns(fd, sc.CLONE_NEWUSER)
    except OSError as exc:
        why = ("it might not be a descendant of the current user namespace"
               if exc.errno == errno.EINVAL else exc.strerror)
        raise SetupError(f"joining the user namespace of fd {fd} failed: {why}",
                         origin=f"{option} {fd}") from exc


def disable_nesting(plan: "Plan", proc: int) -> None:
    """pid 1, once the root is built: move into a user namespace nested in the
    sandbox's, after pid 1 (set_quotas) has set the sandbox's max_user_namespaces
    to 1. That one nested namespace uses the whole quota, and nothing inside it
    can raise a limit that belongs to its parent, so no process of the sandbox
    can create a user namespace (bwrap's --disable-userns)."""
    try:
        sc.unshare(sc.CLONE_NEWUSER)
    except OSError as exc:
        raise SetupError(f"cannot create the nested user namespace: {exc.strerror}",
                         origin="--disable-userns") from exc
    apply(plan.uid_inside, plan.uid_inside, plan.gid_inside, plan.gid_inside, proc)


def check_nesting_disabled(option: str) -> None:
    """Fail unless creating a user namespace fails here. (Succeeding moves this
    process into it; it is about to fail anyway.)"""
    try:
        sc.unshare(sc.CLONE_NEWUSER)
    except OSError:
        return
    raise SetupError("creation of new user namespaces was not disabled as requested",
                     origin=option)


def set_quotas(quotas: tuple[tuple[str, int], ...]) -> None:
    """Write the sandbox's own per-user quotas (/proc/sys/user/max_*), which belong
    to the user namespace of the writer: call with the namespace's capabilities,
    before /proc is replaced."""
    for name, value in quotas:
        path = f"/proc/sys/user/max_{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"%d" % value)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SetupError(f"cannot set {path} to {value}: {exc.strerror}",
                             origin=f"limits.quotas.{name}") from exc


def check_full_range(uid: int, gid: int) -> tuple[SubordinateRange, SubordinateRange]:
    """Fail early, with a hint, when the full-range map cannot work here."""
    import shutil
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} is not installed", origin="identity.map_all",
                             hint=_HINT_UIDMAP)
    subuid = subordinate_range("/etc/subuid", uid)
    subgid = subordinate_range("/etc/subgid", uid)
    if subuid is None or subgid is None:
        missing = "/etc/subuid" if subuid is None else "/etc/subgid"
        raise SetupError(f"no subordinate id range for uid {uid} in {missing}",
                         origin="identity.map_all", hint=_HINT_UIDMAP)
    return subuid, subgid


class FullRangeMaps:
    """The host side of --map-all for one run."""

    def __init__(self, plan: "Plan") -> None:
        self.plan = plan
        self.subuid, self.subgid = check_full_range(plan.uid_outside, plan.gid_outside)

    def host_step(self, pid: int) -> None:
        """Run newuidmap/newgidmap for the namespace child `pid`."""
        import subprocess

        plan = self.plan
        for tool, inside, outside, sub in (
                ("newuidmap", plan.uid_inside, plan.uid_outside, self.subuid),
                ("newgidmap", plan.gid_inside, plan.gid_outside, self.subgid)):
            args = [tool, str(pid)]
            for line in full_range_lines(inside, outside, sub):
                args.extend(line.split())
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SetupError(f"{tool} failed: {proc.stderr.strip() or proc.returncode}",
                                 origin="identity.map_all", hint=_HINT_UIDMAP)

    def close(self) -> None:
        """Nothing to undo: the maps go with the namespace."""


def prepare(plan: "Plan") -> FullRangeMaps:
    return FullRangeMaps(plan)
