"""HelperProcess: one program jailpy runs on the host for exactly one sandbox.

slirp4netns and pasta (runtime/network.py) and xdg-dbus-proxy
(runtime/desktop.py) are started, watched and stopped the same way:

    spawn       fork + execv in a session of its own (a terminal's ^C reaches
                jailpy, which forwards it to the sandbox, not the helper), with
                PDEATHSIG=SIGKILL (a jailpy killed even with SIGKILL leaves no
                helper behind), stdin from /dev/null, stdout and stderr kept in
                a memfd for error messages, no descriptors but those handed
                over; a pidfd notices when it exits
    lifeline    our end of a pipe whose other end the helper watches
                (slirp4netns --exit-fd, xdg-dbus-proxy --fd): closing it asks
                the helper to exit, and the kernel closes it when jailpy dies
    wait_ready  data on a readiness descriptor within READY_TIMEOUT; a helper
                that exits or stalls instead is a SetupError quoting its output
    stop        close the lifeline (SIGTERM for a helper without one), SIGKILL
                after STOP_TIMEOUT, reap; safe to call twice

A new helper is a subclass that builds its command line, calls spawn() and
wait_ready(), and words its own errors where the defaults do not fit.
"""

from __future__ import annotations

import os
import select
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)
import time

from ..errors import SetupError
from ..linux import syscalls as sc
from .target import reset_signals

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0


class HelperProcess:
    """A helper we spawn, wait for, and always stop (see the module docstring)."""

    #: What error messages call the helper.
    name = ""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.pid: int | None = None
        self.pidfd = -1
        self.output = -1
        self.lifeline = -1

    @property
    def origin(self) -> str:
        """The profile setting that asked for this helper, for error messages."""
        raise NotImplementedError

    # Starting.
    def spawn(self, argv: list[str], keep_fds: tuple[int, ...] = (), lifeline: int = -1) -> None:
        """Start the helper with `argv`; it inherits `keep_fds`. `lifeline` is our
        end of its lifeline pipe: ours to close from here on, in stop()."""
        self.lifeline = lifeline
        self.output = os.memfd_create(f"jailpy-{self.name}", os.MFD_CLOEXEC)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._exec(argv, keep_fds, supervisor)
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)

    def _exec(self, argv: list[str], keep_fds: tuple[int, ...], supervisor: int) -> None:
        """In the forked child: detach from the terminal, die with jailpy, exec."""
        try:
            os.setsid()
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != supervisor:
                os._exit(1)
            reset_signals()  # stop()'s SIGTERM must not meet the supervisor's relay handler
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(self.output, 1)
            os.dup2(self.output, 2)
            sc.close_range_cloexec(3)
            for fd in keep_fds:
                os.set_inheritable(fd, True)
            os.chdir("/")
            os.execv(self.binary, argv)
        except BaseException as exc:  # noqa: BLE001 - reported through the output
            try:
                os.write(2, f"cannot run {self.binary}: {exc}\n".encode())
            except OSError:
                pass
        os._exit(127)

    def wait_ready(self, fd: int) -> bytes:
        """Data from fd once the helper signals readiness; raises if it dies or stalls."""
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.register(self.pidfd, select.POLLIN)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = self.timed_out()
                self.stop()
                raise error
            events = dict(poll.poll(remaining * 1000))
            if fd in events:
                data = os.read(fd, 64)
                if data:
                    return data
                poll.unregister(fd)  # EOF without data: the helper is going away
            if self.pidfd in events:
                raise self.died()

    # Errors during start-up; a helper may word its own.
    def timed_out(self) -> SetupError:
        """The helper did not signal readiness in time (it is still running)."""
        output = self.read_output()
        return SetupError(f"{self.name} did not become ready within {READY_TIMEOUT:g} s"
                          + (f" (it printed: {output})" if output else ""),
                          origin=self.origin, hint=f"run with --debug and check that "
                          f"{self.name} works on this machine (jailpy check)")

    def died(self) -> SetupError:
        """The helper exited during start-up: say so, with what it printed."""
        status = self._reap(block=True)
        how = ("killed by signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status)
               else "exit status %d" % os.WEXITSTATUS(status)) if status is not None else "gone"
        return SetupError(f"{self.name} exited during start-up ({how}): "
                          f"{self.read_output() or 'it printed nothing'}", origin=self.origin,
                          hint=f"see 'jailpy check'; the message above is {self.name}'s own")

    def read_output(self, limit: int = 3) -> str:
        """The helper's last meaningful output lines, joined on one line."""
        if self.output < 0:
            return ""
        data = os.pread(self.output, 65536, 0).decode(errors="replace")
        lines = [line.strip() for line in data.splitlines()]
        lines = [line for line in lines if line and "to syslog" not in line]
        return " | ".join(lines[-limit:])

    # Stopping.
    def stop(self) -> None:
        """Ask the helper to exit, kill it if it does not, reap it; safe to call twice."""
        if self.pid is not None:
            try:
                self._terminate()
            except ProcessLookupError:
                pass
            if self._reap(timeout=STOP_TIMEOUT) is None and self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)
                self._reap(block=True)
        for attr in ("pidfd", "output", "lifeline"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def _terminate(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        elif self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)

    def _reap(self, block: bool = False, timeout: float = 0.0) -> int | None:
        """The helper's wait status once it has exited (None while it runs)."""
        if self.pid is None:
            return None
        if not block and timeout > 0 and self.pidfd >= 0:
            select.select([self.pidfd], [], [], timeout)
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return None
        self.pid = None
        return status
