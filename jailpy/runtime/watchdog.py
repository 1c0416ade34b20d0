"""The wall-clock timeout, as a small state machine the supervisor polls.

The supervisor never sleeps blindly: it waits on the report pipe for at most
`wait_time()` seconds and calls `expire()` when that passes. The stages:

    armed        at the deadline: SIGTERM to pid 1, which relays it to the
                 target (as timeout(1) signals its child); the grace starts
    terminating  after the grace: pid 1 is told to SIGKILL everything in the
                 pid namespace (init.KILL_ALL), and the sandbox's cgroup, if
                 any, is emptied too (a shared pid namespace has no "everything")
    killing      a few seconds later, if the sandbox still has not ended:
                 SIGKILL to pid 1 itself (the kernel then kills its namespace)
    killed       a last resort: SIGKILL to the namespace child, so the
                 supervisor is never left waiting
    done         nothing more to do

pid 1 does the killing while it can, rather than being killed, because it
still reaps what it kills: the CPU time of a command ended by the timeout is
then in the report, where a SIGKILLed pid 1 would take it along.
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)
import time

from .init import KILL_ALL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

#: Seconds between the escalation steps after the grace period.
ESCALATION = 2.0


class Watchdog:
    def __init__(self, timeout: float, grace: float, start: float,
                 kill_rest: "Callable[[tuple[int, ...]], None] | None" = None):
        self.deadline: float | None = start + timeout
        self.grace = grace
        self.kill_rest = kill_rest
        self.stage = "armed"
        self.fired = False
        self.child: int | None = None
        self.pid1: int | None = None

    def wait_time(self) -> float | None:
        """Seconds until the next action, or None when there is none left."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def expire(self) -> None:
        """Take the next step; called when wait_time() has passed."""
        now = time.monotonic()
        if self.stage == "armed":
            self.fired = True
            if self.pid1 is None:  # still setting up: nothing inside to be polite to
                self.stage, self.deadline = "killed", now + ESCALATION
                self._kill_rest(())
                _kill(self.child, signal.SIGKILL)
                return
            self.stage, self.deadline = "terminating", now + self.grace
            _kill(self.pid1, signal.SIGTERM)
        elif self.stage == "terminating":
            self.stage, self.deadline = "killing", now + ESCALATION
            _kill(self.pid1, KILL_ALL)
            self._kill_rest((self.child, self.pid1))
        elif self.stage == "killing":
            self.stage, self.deadline = "killed", now + ESCALATION
            _kill(self.pid1, signal.SIGKILL)
            self._kill_rest((self.child,))
        else:
            self.stage, self.deadline = "done", None
            _kill(self.child, signal.SIGKILL)

    def _kill_rest(self, spare: tuple[int | None, ...]) -> None:
        if self.kill_rest is not None:
            self.kill_rest(tuple(pid for pid in spare if pid is not None))


def _kill(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
