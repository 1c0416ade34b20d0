"""`jailpy check`: what this machine supports, with a fix for each gap.

Each feature's report/<feature>.py contributes a checks() function returning
Check rows; this module holds the core rows and collects the rest, so a new
feature adds its file to report.features() instead of editing this one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..plan import Plan


@dataclass(frozen=True)
class Check:
    """One row of `jailpy check`.

    `needed` tells `jailpy run --explain` whether a plan depends on this
    row: a missing piece a plan needs is listed under "cannot apply on this
    machine". Rows without it count as needed by every plan when their area
    is "core", and by none otherwise. A missing core row makes `jailpy check`
    exit 1. An `optional` row (a desktop session piece, which a headless
    machine never has) that is missing reads "not needed" unless asked for.
    """

    area: str
    name: str
    ok: bool
    detail: str
    hint: str | None = None
    needed: Callable[["Plan"], bool] | None = None
    optional: bool = False

    def status(self, show_optional: bool = False) -> str:
        if self.ok:
            return "ok"
        return "not needed" if self.optional and not show_optional else "MISSING"

    def needed_by(self, plan: "Plan") -> bool:
        return self.needed(plan) if self.needed is not None else self.area == "core"


def read_value(path: str) -> str | None:
    """A /proc or /sys value, or None where the kernel does not have it: a
    missing knob is itself an answer for `jailpy check`, not an error."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


#: sysctl knobs that can keep an unprivileged user from creating user namespaces, with
#: the value that allows it; a fix names only the knobs this kernel has.
USERNS_KNOBS = {
    "user.max_user_namespaces": ("/proc/sys/user/max_user_namespaces", "15000"),
    "kernel.unprivileged_userns_clone": ("/proc/sys/kernel/unprivileged_userns_clone", "1"),
    "kernel.apparmor_restrict_unprivileged_userns":
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0"),
}


def userns_probe() -> str | None:
    """Create a user namespace in a child process: None if that works, else why not."""
    from ..linux import syscalls as sc

    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWUSER)
            os._exit(0)
        except OSError as exc:
            os._exit(exc.errno or 1)
        finally:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else f"unshare(CLONE_NEWUSER) failed: {os.strerror(code)}"


def userns_fix() -> str:
    """The settings that would allow user namespaces here, now and after a reboot."""
    wrong = {}
    for knob, (path, good) in USERNS_KNOBS.items():
        value = read_value(path)
        if value is not None and (value == "0" if knob == "user.max_user_namespaces"
                                  else value != good):
            wrong[knob] = good
    if not wrong:
        return ("the kernel allows them, so something around it does not (a container's "
                "seccomp profile or an LSM policy): run jailpy outside it or allow "
                "unshare(CLONE_NEWUSER) there")
    now = " ".join(f"{knob}={value}" for knob, value in wrong.items())
    lines = "\\n".join(f"{knob} = {value}" for knob, value in wrong.items())
    return (f"as root: sysctl -w {now}; to keep it after a reboot: "
            f"printf '{lines}\\n' > /etc/sysctl.d/50-jailpy-userns.conf")


def core_checks() -> list[Check]:
    """User namespaces, the kernel mount API, python-prctl, the architecture, and
    the id-mapping helpers."""
    rows = []
    knobs = [f"{knob.split('.')[-1]}={value}" for knob, (path, _) in USERNS_KNOBS.items()
             if (value := read_value(path)) is not None]
    failure = userns_probe()
    rows.append(Check("core", "user namespaces", failure is None,
                      "; ".join([failure or "an unprivileged user can create them", *knobs]),
                      None if failure is None else userns_fix()))
    from ..errors import SetupError
    from ..linux import syscalls as sc

    try:
        sc.check_supported()
        supported, why, fix = True, f"{sc.MACHINE}, python-prctl", None
    except SetupError as exc:
        supported, why, fix = False, exc.message, exc.hint
    rows.append(Check("core", "architecture and python-prctl", supported, why, fix))
    release = os.uname().release
    version = tuple(int(x) for x in release.split(".")[:2] if x.isdigit())
    rows.append(Check("core", "mount API (open_tree, mount_setattr)", version >= (5, 12),
                      f"kernel {release}",
                      None if version >= (5, 12) else "jailpy needs Linux 5.12 or newer"))
    from ..runtime.userns import subordinate_range

    helpers = all(shutil.which(t) for t in ("newuidmap", "newgidmap"))
    sub = subordinate_range("/etc/subuid", os.getuid())
    map_all: Callable[["Plan"], bool] = lambda plan: plan.map_all
    rows.append(Check("identity", "newuidmap/newgidmap", helpers,
                      "installed" if helpers else "missing",
                      None if helpers else "install the 'uidmap' package (needed for --map-all)",
                      needed=map_all))
    rows.append(Check("identity", "subordinate ids", sub is not None,
                      f"{sub.count} ids from {sub.start}" if sub else "no range in /etc/subuid",
                      None if sub else "usermod --add-subuids 100000-165535 "
                      "--add-subgids 100000-165535 $USER (needed for --map-all)",
                      needed=map_all))
    return rows


def exit_status(rows: list[Check]) -> int:
    """1 when a core requirement is missing (no sandbox can run), else 0."""
    return 1 if any(not row.ok and row.area == "core" for row in rows) else 0


def as_json(rows: list[Check], show_optional: bool) -> list[dict]:
    return [{"area": row.area, "feature": row.name, "status": row.status(show_optional),
             "detail": row.detail, "fix": None if row.ok else row.hint} for row in rows]


def collect() -> list[Check]:
    """The core rows, then each feature's own (report/<feature>.py), in display order."""
    from . import features

    rows = core_checks()
    for feature in features():
        rows.extend(feature.checks())
    return rows
