"""The workspace: the one host directory an untrusted build may write.

A profile (ci-build) says `workspace.path = "${CWD}"`; the planner turns
that into a read-write bind placed after every other mount op, and makes it
the working directory. Because the path usually comes from wherever the
caller happens to stand, it is checked against the caller's home (the passwd entry's, and $HOME's): binding
`/`, `/home` or `$HOME` itself would hand ~/.ssh, ~/.aws and the rest to the
build, which is the thing the profile exists to prevent. The check compares
resolved paths, so a symlink to the home directory does not get around it.
"""

from __future__ import annotations

import os
import pwd

from ..errors import ConfigError
from ..policy import Caller, MountOp, Policy


def _homes(caller: Caller) -> list[str]:
    """The user's home by the passwd entry (what holds the secrets, whatever $HOME
    says), and $HOME too when it names another directory."""
    homes = []
    try:
        homes.append(pwd.getpwuid(caller.uid).pw_dir)
    except KeyError:
        pass
    if caller.env.get("HOME", "").startswith("/"):
        homes.append(caller.env["HOME"])
    return [os.path.realpath(home) for home in homes]


def _contains(parent: str, child: str) -> bool:
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


#: Kernel and device trees: a writable bind of anything in them reaches host
#: processes (/proc/PID/mem), devices or kernel settings.
_KERNEL_TREES = ("/proc", "/sys", "/dev")
#: Shared places holding other programs' sockets (ssh-agent, X11, D-Bus,
#: the session's runtime dir): a workspace may live below /tmp, but must
#: not be one of these or contain them.
_SHARED_PLACES = ("/tmp", "/var/tmp", "/dev/shm", "/run")


def why_unsafe(real: str, caller: Caller) -> str | None:
    """Why binding `real` read-write (or overlaying it: plan/changes.py) would hand the
    build something beyond its project."""
    if real == "/":
        return "is /; the build could read every secret of the caller"
    for home in _homes(caller):
        if _contains(real, home):
            return f"contains the home directory {home}; the build could read its secrets"
    for tree in _KERNEL_TREES:
        if _contains(real, tree) or _contains(tree, real):
            return f"is in or contains {tree}; the build could reach host processes or devices"
    runtime = caller.env.get("XDG_RUNTIME_DIR")
    for place in (*_SHARED_PLACES, *([os.path.realpath(runtime)] if runtime else [])):
        if _contains(real, place):
            return f"is or contains {place}, where other programs keep their sockets"
        if place not in ("/tmp", "/var/tmp") and _contains(place, real):
            return f"lies in {place}, where other programs keep their sockets"
    return None


def workspace_ops(policy: Policy, caller: Caller) -> tuple[tuple[MountOp, ...], str | None]:
    """(the workspace bind, the cwd it implies) or ((), None) without a workspace."""
    ws = policy.workspace
    if ws.path is None:
        return (), None
    path = os.path.normpath(ws.path)
    real = os.path.realpath(path)
    problem = why_unsafe(real, caller)
    if problem is not None:
        raise ConfigError(f"workspace {path} {problem}", origin=ws.origin,
                          hint="run jailpy from the project directory, or pass --workspace DIR")
    op = MountOp(kind="bind", dest=path, source=path, origin=ws.origin)
    if caller.cwd is not None and _contains(path, os.path.normpath(caller.cwd)):
        return (op,), caller.cwd
    return (op,), path
