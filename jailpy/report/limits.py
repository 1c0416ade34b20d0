"""Limits for humans: the `--explain` section and the `jailpy check` rows.

Both probe the cgroup hierarchies read-only (mountinfo, /proc/self/cgroup,
directory permissions), so what they say is what a run would find.
"""

from __future__ import annotations

import os

from .check import Check
from .nesting import proc_sys_read_only
from ..plan import Plan
from ..policy import Limits
from ..runtime import cgroups

_CONTROLLERS = ("memory", "pids", "cpu")


def _size(n: int) -> str:
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _rlimit(name: str, value: int) -> str:
    from ..profile.limits import INFINITY, RLIMIT_UNITS

    if value == INFINITY:
        return "unlimited"
    return _size(value) if RLIMIT_UNITS[name] == "size" else str(value)


def _placement(limits: Limits) -> dict[str, str]:
    """Controller -> where its sandbox cgroup would go, or why it cannot."""
    chosen, missing = cgroups.choose_hierarchies(limits.cgroup_controllers,
                                                 cgroups.hierarchies())
    configured, _ = cgroups.configured_parent(limits)
    own = cgroups.own_cgroups()
    where = {ctrl: "UNAVAILABLE: no hierarchy offers it" for ctrl in missing}
    for ctrl, h in chosen.items():
        try:
            parent = cgroups.find_parent(h, configured, own)
            where[ctrl] = f"cgroup {h.label}, under {parent.directory}"
        except cgroups.NoParent as exc:
            where[ctrl] = f"UNAVAILABLE ({h.label}): {exc}"
    return where


def explain_sections(plan: Plan) -> list[tuple[str, list[str]]]:
    limits = plan.limits
    lines = []
    for name, soft, hard in limits.rlimits:
        lines.append(f"rlimit {name:<8} {_rlimit(name, soft)}:{_rlimit(name, hard)}    "
                     f"[{limits.origin_of('rlimits.' + name)}]")
    read_only = bool(plan.quotas) and proc_sys_read_only()
    for name, value in plan.quotas:
        origin = dict(limits.origins).get(f"quotas.{name}", "default")
        where = "in the sandbox's user namespace"
        if read_only:
            where = ("NOT SET HERE: /proc/sys is read-only (skipped, with a warning)"
                     if name in plan.default_quotas else
                     "UNAVAILABLE here: /proc/sys is read-only (the run fails)")
        lines.append(f"quota {name:<18} {value} {where}    [{origin}]")
    if limits.timeout is not None:
        lines.append(f"timeout        {limits.timeout:g}s, SIGTERM then SIGKILL after "
                     f"{limits.kill_grace:g}s; exit status 124    [{limits.origin_of('timeout')}]")
    place = _placement(limits) if limits.cgroup_controllers else {}
    if limits.memory_max is not None:
        swap = limits.memory_swap_max or 0
        lines.append(f"memory max     {_size(limits.memory_max)} (+ swap {_size(swap)}); "
                     f"{place['memory']}")
    if limits.pids_max is not None:
        lines.append(f"pids max       {limits.pids_max}; {place['pids']}")
    if limits.cpus is not None:
        lines.append(f"cpus           {limits.cpus:g} per {limits.cpu_period * 1000:g}ms; "
                     f"{place['cpu']}")
    if limits.cgroup_controllers:
        lines.append("cgroup limits are " + ("best-effort" if limits.best_effort else
                                             "required (an error if they cannot be applied)"))
    return [("limits", lines or ["none"])]


def checks() -> list[Check]:
    """Which cgroup version applies, and whether a delegated parent exists."""
    found = cgroups.hierarchies()
    chosen, missing = cgroups.choose_hierarchies(_CONTROLLERS, found)
    v2 = [h for h in found if h.version == 2]
    versions = sorted({h.label.split()[0] for h in chosen.values()})
    detail = ", ".join(f"{c}: {chosen[c].label.split()[0]}" for c in chosen)
    if v2 and not v2[0].controllers and chosen:
        detail += f" (hybrid: the v2 hierarchy at {v2[0].mount} has no controllers)"
    rows = [Check("limits", "cgroup controllers", not missing,
                  detail + (f"; missing: {', '.join(missing)}" if missing else ""),
                  "memory, pids and cpu limits need these controllers" if missing else None)]
    configured, source = cgroups.configured_parent(None)
    own = cgroups.own_cgroups()
    for version in versions:
        ctrls = [c for c, h in chosen.items() if h.label.startswith(version)]
        problems, parents = [], []
        for ctrl in ctrls:
            try:
                parents.append(cgroups.find_parent(chosen[ctrl], configured, own).directory)
            except cgroups.NoParent as exc:
                problems.append(f"{ctrl}: {exc}")
        ok = not problems
        shown = ", ".join(dict.fromkeys(parents)) if ok else "; ".join(problems)
        if configured:
            shown += f" (from {source})"
        rows.append(Check("limits", f"delegated cgroup parent ({version})", ok, shown,
                          None if ok else cgroups.delegation_hint(2 if version == "v2" else 1)))
    release = os.uname().release
    kernel = tuple(int(x) for x in release.split("-")[0].split(".")[:2] if x.isdigit())
    per_ns = kernel >= (5, 14)
    rows.append(Check("limits", "rlimits", True,
                      "RLIMIT_NPROC counts the sandbox's own processes (per user namespace)"
                      if per_ns else "RLIMIT_NPROC counts every process of the host user "
                      "(kernel before 5.14)"))
    return rows

