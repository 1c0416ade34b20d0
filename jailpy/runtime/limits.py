"""Host-side enforcement of one run's limits, as the launcher sees it.

The launcher calls an Enforcer at fixed points and knows nothing about
cgroups or timeouts:

    prepare(plan)         supervisor, before fork: creates the cgroup
    apply()               namespace child, before unshare: enters the cgroup
    forked(child)         supervisor, after fork
    started(pid1)         supervisor, when pid 1 reports in
    wait_time()/expire()  supervisor, while waiting: drives the timeout
    close()               supervisor, after wait4: reads the cgroup, removes it

rlimits are not here: they are set in the target itself (runtime/rlimits.py).
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` would import enum (ms at start-up)
import time

from ..policy import Limits
from ..record import Record
from .cgroups import CgroupStats, SandboxCgroup
from .watchdog import Watchdog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from ..plan import Plan


class LimitReport(Record):
    """What the limits did, for the Result."""

    timed_out: bool = False
    cgroup: str | None = None
    stats: CgroupStats | None = None
    not_applied: tuple[str, ...] = ()


def prepare(plan: "Plan", start: float) -> "Enforcer":
    """The Enforcer of a plan with a timeout or cgroup limits; the timeout counts from
    `start`, when the run began."""
    return Enforcer(plan.limits, start)


class Enforcer:
    def __init__(self, limits: Limits, start: float | None = None):
        self.limits = limits
        self.cgroup: SandboxCgroup | None = None
        skipped: list[str] = []
        if limits.cgroup_controllers:
            self.cgroup, skipped = SandboxCgroup.create(limits)
        self.not_applied = tuple(skipped)
        self.watchdog = None
        if limits.timeout is not None:
            self.watchdog = Watchdog(limits.timeout, limits.kill_grace,
                                     time.monotonic() if start is None else start,
                                     self._kill_rest if self.cgroup else None)

    def apply(self) -> None:
        """In the namespace child, before unshare: enter the cgroup."""
        if self.cgroup is not None:
            self.cgroup.join()

    def forked(self, child: int) -> None:
        if self.cgroup is not None:
            self.cgroup.close_join_fds()
        if self.watchdog is not None:
            self.watchdog.child = child

    def started(self, pid1: int) -> None:
        if self.watchdog is not None:
            self.watchdog.pid1 = pid1

    def wait_time(self) -> float | None:
        return self.watchdog.wait_time() if self.watchdog is not None else None

    def expire(self) -> None:
        if self.watchdog is not None:
            self.watchdog.expire()

    def _kill_rest(self, spare: tuple[int, ...]) -> None:
        assert self.cgroup is not None
        self.cgroup.kill_all(exclude=spare)

    def report(self) -> LimitReport:
        """What the limits did so far (a pool reads it once the command's processes
        are gone, before the namespace child is)."""
        return LimitReport(timed_out=bool(self.watchdog and self.watchdog.fired),
                           cgroup=f"v{self.cgroup.version}" if self.cgroup else None,
                           stats=self.cgroup.stats() if self.cgroup else None,
                           not_applied=self.not_applied)

    def close(self) -> LimitReport:
        """After the namespace child was reaped: read the cgroup back and remove it."""
        if self.cgroup is not None:
            self.cgroup.close_join_fds()
        report = self.report()
        if self.cgroup is not None:
            self.cgroup.remove()
        return report


def collect_with_deadline(report_r: int, on_started: "Callable[[int], None] | None",
                          enforcer: Enforcer) -> list[dict]:
    """The supervisor's wait when a timeout runs: poll the report pipe for at most
    the watchdog's next deadline, act when it passes, read messages until EOF.
    Signal handlers (the CLI's relay) run while poll waits, as before."""
    import select

    from . import channel

    reader = channel.Reader(report_r)
    poller = select.poll()
    poller.register(report_r, select.POLLIN)
    messages: list[dict] = []
    while True:
        wait = enforcer.wait_time()
        if wait is not None and not poller.poll(int(wait * 1000) + 1):
            enforcer.expire()
            continue
        batch = reader.read()
        if batch is None:
            return messages
        for message in batch:
            if "started" in message:
                enforcer.started(message["started"])
                if on_started is not None:
                    on_started(message["started"])
        messages += batch


def ended_by(limits: Limits, report: LimitReport, sig: int | None, failed: bool,
             cpu_seconds: float) -> tuple[str | None, tuple[str, ...]]:
    """Which limit ended the command (if one did), and every limit seen triggering.

    Names: "timeout"; "memory" (the cgroup's OOM killer killed a process and
    the command then failed: killed itself, or e.g. make exiting 2 after its
    compiler was killed); "rlimit-cpu" (SIGXCPU, or SIGKILL at the hard
    limit); "rlimit-fsize" (SIGXFSZ). "pids" only ever appears in the second
    list, since a full pids cgroup makes fork fail rather than killing anything.
    """
    hit: list[str] = []
    stats = report.stats
    if report.timed_out:
        hit.append("timeout")
    if stats is not None and stats.oom_kills:
        hit.append("memory")
    if stats is not None and stats.pids_max_hits:
        hit.append("pids")
    cpu = dict((n, (s, h)) for n, s, h in limits.rlimits).get("cpu")
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu is not None
                                  and cpu_seconds >= min(cpu) and "memory" not in hit):
        hit.append("rlimit-cpu")
    if sig == signal.SIGXFSZ:
        hit.append("rlimit-fsize")
    if report.timed_out:
        return "timeout", tuple(hit)
    if failed and "memory" in hit and sig in (None, signal.SIGKILL):
        return "memory", tuple(hit)
    for name in ("rlimit-cpu", "rlimit-fsize"):
        if name in hit:
            return name, tuple(hit)
    return None, tuple(hit)
