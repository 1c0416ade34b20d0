"""The target: the command's own process, from fork to execve.

    prepare(plan)   supervisor, before fork: every privilege layer is decided
                    here, where a configuration error is reported cleanly and
                    nothing has been set up yet: the kept capabilities are
                    checked, the seccomp program is found in the cache or
                    compiled, the Landlock rules are checked against this
                    kernel's ABI. Returns the Restrictions the target applies.
    apply(...)      target, inside the new root: cwd, signal dispositions,
                    a process group of its own (the pty's foreground group),
                    descriptors, rlimits, then the privilege layers:
                    Landlock rule paths opened -> capabilities dropped,
                    securebits locked -> no_new_privs -> Landlock enforced ->
                    seccomp loaded (last) -> the launcher calls execve
    restrict_self(...)  a warm pool's pid 1 (when can_spawn: decided once per
    spawn(plan)         pool): the same layers taken on by pid 1 itself, then
                        the command started with posix_spawn (vfork + execve),
                        so no Python process is forked for the target

Order matters: what needs privileges (rlimits above the soft limit, opening
Landlock rule paths) comes before the capability drop; no_new_privs comes
before Landlock and seccomp, and seccomp comes last so the filter never has
to allow the set-up calls themselves.
"""

from __future__ import annotations

import errno
import os
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)

from ..errors import SetupError
from ..linux import syscalls as sc
from ..plan import Plan
from ..record import Record
from . import caps, init, landlock, seccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .tty import Terminal


class Restrictions(Record):
    """The privilege layers as this kernel will enforce them, decided on the host."""

    landlock: landlock.LandlockSetup | None
    seccomp_program: bytes | None
    #: pid 1 takes these on itself and spawns the command (can_spawn; a pool sets it).
    spawnable: bool = False


def prepare(plan: Plan) -> Restrictions:
    """Decide every privilege layer on the host; raises for what cannot be enforced."""
    caps.prepare(plan.keep_caps)
    return Restrictions(landlock.prepare(plan.landlock), seccomp.prepare(plan.seccomp))


def choose_cwd(plan: Plan) -> str | None:
    """The explicit cwd, or the caller's cwd if the same directory is visible;
    None when it is not (the command then starts in /)."""
    if plan.cwd is None:
        return "/"
    if plan.cwd_identity is None:
        return plan.cwd
    try:
        st = os.stat(plan.cwd)
    except OSError:
        return None
    return plan.cwd if (st.st_dev, st.st_ino) == plan.cwd_identity else None


#: Signals whose disposition the target must not inherit from Python: the ones
#: Python ignores itself (SIGPIPE, SIGXFSZ) and every one the supervisor installs a
#: relaying handler for (init.FORWARDED, SIGINT among them).
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, *init.FORWARDED)


def reset_signals() -> None:
    """Default dispositions first, then unblock: a forwarded signal pid 1 queued
    while the mask was inherited blocked is then delivered by the kernel with its
    default action (or after execve, to the command's own handler), never to a
    Python handler copied from the supervisor, which would swallow it."""
    for sig in _RESET:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _say_cwd_is_not_visible(cwd: str) -> None:
    """One line on stderr with the fix: a `make` started in / fails far from the
    cause. Written last, so a set-up error is never preceded by it."""
    note = (f"jailpy: note: {cwd} is not visible in the sandbox, starting in /; "
            f"add --bind \"$PWD\" \"$PWD\" or --workspace \"$PWD\" to work there\n")
    try:
        os.write(2, note.encode(errors="replace"))
    except OSError:
        pass


def apply(plan: Plan, restrictions: Restrictions, terminal: "Terminal | None" = None) -> None:
    """Everything between fork and execve; raises SetupError on failure."""
    if plan.new_session:
        # A process group of its own: the signals pid 1 forwards reach the
        # command's whole group. Its parent, pid 1, is in the same session, so
        # the group is not orphaned and stops on SIGTSTP like any job.
        os.setpgid(0, 0)
    if terminal is not None:
        terminal.apply()
    chosen = _enter_cwd(plan)
    reset_signals()
    sc.close_range_cloexec(3)
    for fd in plan.pass_fds:
        try:
            os.set_inheritable(fd, True)
        except OSError as exc:
            raise SetupError(f"file descriptor {fd} is not open", origin=f"--pass-fd {fd}") from exc
    if plan.limits.rlimits:
        from . import rlimits  # imported by the supervisor before fork

        rlimits.apply(plan.limits)
    _restrict(plan, restrictions)  # keep this last
    _after_cwd(plan, chosen)


#: The syscall groups pid 1 draws on after restrict_self(): reaping, reporting,
#: placing a request's files in the work dir, spawning the command.
_PID1_NEEDS = ("@basic-io", "@file-system", "@memory", "@process", "@signal", "@timer")
#: Calls pid 1 makes outside those groups, with the one refusal it copes with:
#: glibc's posix_spawn tries clone3 first and falls back to clone only on ENOSYS
#: (any other refusal fails the spawn, so every request would fail).
_PID1_ALSO_CALLS = {"clone3": "errno:ENOSYS"}


def can_spawn(plan: Plan) -> bool:
    """Whether pid 1 may take on the command's restrictions itself and start the
    command with spawn() instead of forking a target (a warm pool decides this
    once per pool, so the seccomp rules are resolved off `jailpy run`'s path).

    pid 1 goes on running under them: it reaps, reports and exits. So only a
    seccomp deny-list that refuses none of _PID1_NEEDS, nor clone3 other than
    with ENOSYS, qualifies (jailpy's argument filters on clone's namespace flags
    and tty ioctls leave posix_spawn and pid 1 alone), with no extra BPF
    programs, and no rlimits, which pid 1 never takes on (rlimits.py). Anything
    else keeps the forked target."""
    if plan.limits.rlimits or plan.pass_fds or plan.seccomp.programs:
        return False
    from ..plan.seccomp import VALUE_NAMES, names_in, resolve

    rules = resolve(plan.seccomp)
    if rules is None:
        return True
    if rules.default_action != "allow":
        return False
    needed = frozenset().union(*map(names_in, _PID1_NEEDS), _PID1_ALSO_CALLS)

    def spares_pid1(rule) -> bool:
        if rule.syscall not in needed or rule.action == "allow" \
                or rule.action == _PID1_ALSO_CALLS.get(rule.syscall):
            return True
        return bool(rule.match) and all((rule.syscall, m.arg, m.value) in VALUE_NAMES
                                        for m in rule.match)
    return all(map(spares_pid1, (*rules.main, *rules.guard)))


def restrict_self(plan: Plan, restrictions: Restrictions) -> None:
    """apply() for a spawned command, run in pid 1 itself: what posix_spawn cannot
    do (cwd, Landlock, capabilities, no_new_privs, seccomp) is done here and
    inherited; spawn() does the signals and the process group."""
    chosen = _enter_cwd(plan)
    sc.close_range_cloexec(3)
    _restrict(plan, restrictions)
    _after_cwd(plan, chosen)


def spawn(plan: Plan) -> int:
    """Start the command with posix_spawn, which glibc does with vfork and execve:
    this Python process's memory is not copied, as a fork would copy it. The
    child gets what apply() gives a forked target: default dispositions for
    _RESET, an empty signal mask, a process group of its own. The command is
    searched for in its own environment's PATH, as os.execvpe searches; raises
    what execve raised."""
    argv = list(plan.argv)
    if plan.argv0 is not None:
        argv[0] = plan.argv0
    options = dict(setpgroup=0 if plan.new_session else None, setsigmask=(), setsigdef=_RESET)
    name = plan.argv[0]
    if "/" in name:
        return os.posix_spawn(name, argv, plan.env, **options)
    first_refusal = None
    for directory in os.get_exec_path(plan.env):
        path = os.path.join(directory, name)
        try:
            os.stat(path)  # a PATH entry without it costs a stat, not a vfork and an execve
            return os.posix_spawn(path, argv, plan.env, **options)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            first_refusal = first_refusal or exc
    raise first_refusal or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _enter_cwd(plan: Plan) -> str | None:
    """chdir to the directory choose_cwd() picks (or a fallback); returns the choice."""
    chosen = choose_cwd(plan)
    if chosen is None and plan.cwd_fallback:
        chosen = next((path for path in plan.cwd_fallback if _enterable(path)), "/")
    cwd = "/" if chosen is None else chosen
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise SetupError(f"cannot change directory to {cwd}: {exc.strerror}",
                         origin="process.cwd") from exc
    if plan.cwd_fallback:  # bwrap's rule; this process's own copy of the plan's env
        plan.env["PWD"] = cwd
    return chosen


def _after_cwd(plan: Plan, chosen: str | None) -> None:
    if chosen is None and plan.cwd not in (None, "/"):  # "/" is where it starts anyway
        _say_cwd_is_not_visible(plan.cwd)


def _enterable(path: str) -> bool:
    try:
        os.chdir(path)
    except OSError:
        return False
    return True


def _restrict(plan: Plan, restrictions: Restrictions) -> None:
    """Landlock, capabilities, no_new_privs, seccomp: the last steps before execve."""
    ruleset = None
    if restrictions.landlock is not None:
        ruleset = landlock.build_ruleset(restrictions.landlock, (0, 1, 2, *plan.pass_fds))
    try:
        caps.apply(plan.keep_caps)
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    except BaseException:
        if ruleset is not None:
            os.close(ruleset)
        raise
    if ruleset is not None:
        landlock.enforce(ruleset)
    if restrictions.seccomp_program is not None:
        seccomp.apply(restrictions.seccomp_program)
    for program in plan.seccomp.programs:
        seccomp.apply(program, through_prctl=True)
