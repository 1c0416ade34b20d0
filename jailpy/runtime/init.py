"""pid 1 of the sandbox: reap everything, forward signals, mirror the target.

A pid namespace's init has duties an ordinary program does not fulfil:
orphans are re-parented to it, and the kernel drops signals it has no handler
for. This loop blocks the signals it forwards and collects them with
sigwaitinfo, so nothing is lost between fork and the first wait, and it never
runs Python signal handlers at odd moments.
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

#: Signals a supervisor or user may aim at the sandbox; forwarded to the target.
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)
#: Signals a terminal delivers to its foreground process group by itself.
TERMINAL_GENERATED = (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH)
#: Not forwarded: the supervisor's "kill everything now" (timeout grace over). pid 1
#: kills the namespace (without one: the target, then its descendants as usual) and
#: still reaps it all, so the killed processes' CPU time is kept.
KILL_ALL = signal.SIGRTMIN + 1


def block_forwarded() -> set[int]:
    """Block SIGCHLD and the forwarded signals; returns the previous mask."""
    return signal.pthread_sigmask(signal.SIG_BLOCK,
                                  (*FORWARDED, signal.SIGCHLD, KILL_ALL, STOP_COMMAND))


#: From the supervisor, stopping as a job (runtime/tty.py): stop the command's group.
STOP_COMMAND = signal.SIGTSTP


def supervise(target: int, is_pid1: bool, forward_terminal: bool, wait_all: bool = False,
              on_stop: "Callable[[], None] | None" = None) -> int:
    """Wait for `target`, reaping every other child; returns its raw wait status.

    Signals go to the target's whole process group (it leads one in a new
    session), so `sh -c "sleep 100; ..."` and make's recipes get them too.
    With `on_stop`, a stop of the target is reported to it (job control of the
    sandbox's terminal). When the target ends, everything left in the sandbox
    is killed first, so no daemonised leftover outlives the command that
    started it. With `wait_all` the sandbox instead lives until its last
    process has exited (an app that re-executes itself, a launcher that forks
    the real program); the status is still the target's.
    """
    waited = (*FORWARDED, signal.SIGCHLD, KILL_ALL, STOP_COMMAND)
    skip = () if forward_terminal else TERMINAL_GENERATED
    status: int | None = None
    while status is None:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == KILL_ALL:
            _kill(-1 if is_pid1 else target, signal.SIGKILL)
            continue
        if info.si_signo == STOP_COMMAND:
            _signal_group(target, signal.SIGSTOP)
            continue
        if info.si_signo != signal.SIGCHLD:
            if info.si_signo not in skip:
                _signal_group(target, info.si_signo)
            continue
        status = _reap(target, on_stop)
    if wait_all:
        _wait_for_the_rest(waited, skip, is_pid1)
    if is_pid1:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        _kill_descendants()
    _reap_all()
    return status


def _wait_for_the_rest(waited: tuple[int, ...], skip: tuple[int, ...], is_pid1: bool) -> None:
    """After the target: reap until no child is left. Forwarded signals go to
    every process left (the target is gone), a stop stops them all; KILL_ALL
    kills them all."""
    while _children_left():
        info = signal.sigwaitinfo(waited)
        if info.si_signo == KILL_ALL and is_pid1:
            _kill(-1, signal.SIGKILL)
        elif info.si_signo == KILL_ALL:
            _kill_descendants()
        elif info.si_signo != signal.SIGCHLD and info.si_signo not in skip:
            sig = signal.SIGSTOP if info.si_signo == STOP_COMMAND else info.si_signo
            for pid in (-1,) if is_pid1 else _children():
                _kill(pid, sig)


def _children() -> list[int]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        return []


def _kill_descendants() -> None:
    """Without a pid namespace, kill(-1) would hit every process of the user; as
    a child subreaper we adopt every orphan, so our children are the sandbox."""
    while True:
        children = _children()
        if not children:
            return
        for pid in children:
            _kill(pid, signal.SIGKILL)
        _reap_all()


def _signal_group(target: int, sig: int) -> None:
    """`sig` to the target's process group; to the target alone while it has none
    of its own yet (before its setsid) or shares the caller's (--no-new-session)."""
    try:
        os.kill(-target, sig)
    except ProcessLookupError:
        _kill(target, sig)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _collect(on_stop: "Callable[[], None] | None" = None, target: int = 0
             ) -> tuple[dict[int, int], bool]:
    """Reap every child that has exited: their wait statuses, and whether any
    child is still running. With `on_stop`, a stop of `target` is reported."""
    exited: dict[int, int] = {}
    flags = os.WNOHANG | (os.WUNTRACED if on_stop is not None else 0)
    while True:
        try:
            pid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            return exited, False
        if pid == 0:
            return exited, True
        if os.WIFSTOPPED(status):
            if pid == target and on_stop is not None:
                on_stop()
            continue
        exited[pid] = status


def _reap(target: int, on_stop: "Callable[[], None] | None" = None) -> int | None:
    """Collect every exited child; the target's status if it was among them."""
    return _collect(on_stop, target)[0].get(target)


def _children_left() -> bool:
    """Reap what has exited; whether any child is still running."""
    return _collect()[1]


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
