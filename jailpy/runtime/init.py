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

#: Signals a supervisor or user may aim at the sandbox; forwarded to the target.
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)
#: Signals a terminal delivers to its foreground process group by itself.
TERMINAL_GENERATED = (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH)


def block_forwarded() -> set[int]:
    """Block SIGCHLD and the forwarded signals; returns the previous mask."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD))


def supervise(target: int, is_pid1: bool, forward_terminal: bool) -> int:
    """Wait for `target`, reaping every other child; returns its raw wait status.

    When the target ends, everything left in the sandbox is killed first, so
    no daemonised leftover outlives the command that started it.
    """
    waited = (*FORWARDED, signal.SIGCHLD)
    skip = () if forward_terminal else TERMINAL_GENERATED
    status: int | None = None
    while status is None:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            if info.si_signo not in skip:
                try:
                    os.kill(target, info.si_signo)
                except ProcessLookupError:
                    pass
            continue
        status = _reap(target)
    if is_pid1:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        _kill_descendants()
    _reap_all()
    return status


def _kill_descendants() -> None:
    """Without a pid namespace, kill(-1) would hit every process of the user; as
    a child subreaper we adopt every orphan, so our children are the sandbox."""
    while True:
        try:
            with open(f"/proc/self/task/{os.getpid()}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            return
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_all()


def _reap(target: int) -> int | None:
    """Collect every exited child; the target's status if it was among them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == target:
            found = status


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
