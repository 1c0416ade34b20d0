"""`jailpy run --changes`: the overlays whose upper layers are kept for review.

Each host directory in changes.paths (default: the caller's cwd) is overlaid
on itself: the command reads the host's files and writes only to an upper
layer in a fresh run directory,

    <changes root>/<RUN>/upper/<i>    what the command wrote to paths[i]
                        /work/<i>     overlayfs' work dir
                        /run.json     the paths and their recorded state at start

which `jailpy changes` shows, commits or discards (runtime/changes.py). The
changes root is jailpy's own state: the sandbox reaches a run directory only
through its overlay, and the planner covers the root with an empty read-only
tmpfs wherever the profile made it visible, so a sandbox can neither read the
recorded state nor write another run's layers (docs/overlays.md).
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from ..policy import Caller, MountOp, Policy
from ..record import Record
from ..usercache import state_dir
from .workspace import why_unsafe


class ChangesPlan(Record):
    run_id: str
    root: str
    run_dir: str
    paths: tuple[str, ...]
    size: int | None
    review: bool


def changes_root(caller: Caller, configured: str | None = None) -> str | None:
    """Where run directories live: changes.dir, else <state home>/jailpy/changes."""
    if configured:
        return os.path.normpath(configured)
    state = state_dir(caller.env, caller.uid)
    return os.path.join(state, "changes") if state else None


def state_dirs(caller: Caller) -> tuple[str, ...]:
    """jailpy's own state directories (the trust boundary hides these in every
    sandbox): today the default changes root."""
    root = changes_root(caller)
    return (root,) if root else ()


def _inside(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def plan_changes(policy: Policy, caller: Caller) -> tuple[ChangesPlan, tuple[MountOp, ...]]:
    """The run's layout and its mount ops: one overlay per path, then the root hidden."""
    spec = policy.changes
    origin = spec.origin_of("enabled")
    root = changes_root(caller, spec.dir)
    if root is None:
        raise ConfigError("no state directory for the changes: HOME has no passwd entry",
                          origin=origin, hint="set XDG_STATE_HOME or pass --changes-dir DIR")
    paths = spec.paths or ((caller.cwd,) if caller.cwd else ())
    if not paths:
        raise ConfigError("no directory to overlay: the current directory is gone",
                          origin=origin, hint="name one with --changes-path DIR")
    real_root = os.path.realpath(root)
    for i, path in enumerate(paths):
        where = spec.origin_of(f"paths[{i}]") if spec.paths else origin
        real = os.path.realpath(path)
        problem = why_unsafe(real, caller)
        if problem is not None:
            raise ConfigError(f"cannot overlay {path}: it {problem}", origin=where,
                              hint="run from the project directory, or name it with "
                              "--changes-path DIR")
        if _inside(real, real_root) or _inside(real_root, real):
            raise ConfigError(f"cannot overlay {path}: it holds or lies in the changes "
                              f"directory {root}", origin=where,
                              hint="keep --changes-dir outside the overlaid directories")
    import time

    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    run_dir = os.path.join(root, run_id)
    ops = tuple(MountOp(kind="overlay", source=path, dest=path,
                        upper=f"{run_dir}/upper/{i}", work=f"{run_dir}/work/{i}",
                        size=spec.size, origin=origin)
                for i, path in enumerate(paths))
    # The root exists by the time the sandbox is built (prepare() makes it); the
    # default root, when --changes-dir chose another, is hidden too if it exists.
    hidden = [root, *(d for d in state_dirs(caller) if d != root and os.path.isdir(d))]
    plan = ChangesPlan(run_id=run_id, root=root, run_dir=run_dir, paths=tuple(paths),
                       size=spec.size, review=spec.review)
    return plan, (*ops, *(op for d in hidden for op in hide_ops(d)))


def hide_ops(path: str) -> tuple[MountOp, MountOp]:
    """An empty read-only tmpfs over one of jailpy's state directories."""
    origin = "jailpy state: changes directory"
    return (MountOp(kind="tmpfs", dest=path, mode=0o555, size=4096, origin=origin),
            MountOp(kind="remount-ro", dest=path, origin=origin))
