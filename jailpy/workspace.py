"""The workspace: the one host directory an untrusted build may write.

A profile (ci-build) says `workspace.path = "${CWD}"`; the planner turns
that into a read-write bind placed after every other mount op, and makes it
the working directory. Because the path usually comes from wherever the
caller happens to stand, it is checked against the caller's home: binding
`/`, `/home` or `$HOME` itself would hand ~/.ssh, ~/.aws and the rest to the
build, which is the thing the profile exists to prevent. The check compares
resolved paths, so a symlink to the home directory does not get around it.
"""

from __future__ import annotations

import os
import pwd

from .errors import ConfigError
from .policy import MountOp, Policy


def _home(env: dict[str, str], uid: int) -> str | None:
    home = env.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            return None
    return os.path.realpath(home)


def _contains(parent: str, child: str) -> bool:
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


def workspace_ops(policy: Policy, env: dict[str, str], uid: int,
                  caller_cwd: str | None) -> tuple[tuple[MountOp, ...], str | None]:
    """(the workspace bind, the cwd it implies) or ((), None) without a workspace."""
    ws = policy.workspace
    if ws.path is None:
        return (), None
    path = os.path.normpath(ws.path)
    real = os.path.realpath(path)
    home = _home(env, uid)
    if real == "/" or (home is not None and _contains(real, home)):
        what = "is /" if real == "/" else f"contains the home directory {home}"
        raise ConfigError(f"workspace {path} {what}; the build could read its secrets",
                          origin=ws.origin,
                          hint="run jailpy from the project directory, or pass --workspace DIR")
    op = MountOp(kind="bind", dest=path, source=path, origin=ws.origin)
    if caller_cwd is not None and _contains(path, os.path.normpath(caller_cwd)):
        return (op,), caller_cwd
    return (op,), path
