"""The last steps in the target process before execve.

Order matters: things that need privileges (rlimits above the soft limit,
Landlock rule creation) come before the capability drop; no_new_privs comes
before Landlock and seccomp, and seccomp comes last so the filter never has
to allow the set-up calls themselves (see runtime/security.py).
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)

from ..errors import SetupError
from ..linux import syscalls as sc
from ..plan import Plan
from . import security


def choose_cwd(plan: Plan) -> str:
    """The explicit cwd, or the caller's cwd if the same directory is visible."""
    if plan.cwd is None:
        return "/"
    if plan.cwd_identity is None:
        return plan.cwd
    try:
        st = os.stat(plan.cwd)
    except OSError:
        return "/"
    return plan.cwd if (st.st_dev, st.st_ino) == plan.cwd_identity else "/"


def prepare_target(plan: Plan, keep_fds: tuple[int, ...] = ()) -> None:
    """Everything between fork and execve; raises SetupError on failure."""
    cwd = choose_cwd(plan)
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise SetupError(f"cannot change directory to {cwd}: {exc.strerror}",
                         origin="process.cwd") from exc
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    sc.close_range_cloexec(3)
    for fd in plan.pass_fds:
        try:
            os.set_inheritable(fd, True)
        except OSError as exc:
            raise SetupError(f"file descriptor {fd} is not open", origin=f"--pass-fd {fd}") from exc
    if plan.policy.limits.rlimits:
        from .rlimits import apply_rlimits  # imported by the supervisor before fork

        apply_rlimits(plan.policy.limits)
    security.apply(plan)  # capabilities, no_new_privs, Landlock, seccomp: keep this last
