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
    is "core", and by none otherwise.
    """

    area: str
    name: str
    ok: bool
    detail: str
    hint: str | None = None
    needed: Callable[["Plan"], bool] | None = None

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


def core_checks() -> list[Check]:
    """User namespaces, id-mapping helpers and the kernel mount API."""
    rows = []
    max_userns = read_value("/proc/sys/user/max_user_namespaces")
    clone = read_value("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = read_value("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    userns_ok = max_userns not in (None, "0") and clone != "0" and apparmor != "1"
    detail = f"max_user_namespaces={max_userns}"
    if clone is not None:
        detail += f", unprivileged_userns_clone={clone}"
    if apparmor is not None:
        detail += f", apparmor_restrict_unprivileged_userns={apparmor}"
    hint = None
    if not userns_ok:
        hint = ("enable them: sysctl user.max_user_namespaces=15000 "
                "kernel.unprivileged_userns_clone=1 (and allow them in AppArmor/container seccomp)")
    rows.append(Check("core", "user namespaces", userns_ok, detail, hint))
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


def collect() -> list[Check]:
    """The core rows, then each feature's own (report/<feature>.py), in display order."""
    from . import features

    rows = core_checks()
    for feature in features():
        rows.extend(feature.checks())
    return rows
