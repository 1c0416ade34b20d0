"""Host side of the desktop pieces: session directory, X cookie, D-Bus proxy.

One session per sandbox run, opened and closed by Sandbox.run:

    prepare(plan)   fail on any non-optional Problem (exit 125); create missing
                    app/user dirs; lock the app dirs (one sandbox per app profile
                    at a time; see _lock_app_dirs); make the private session directory
                    ($XDG_RUNTIME_DIR/jailpy/PID-RANDOM, else /tmp/jailpy-UID/...,
                    0700) and write the filtered X cookie into it
    host_step(pid)  start xdg-dbus-proxy (once the namespace child has unshared,
                    before it may build its root): the proxy listens on sockets in
                    the session directory, which the plan binds into the sandbox
    close()         stop the proxy, remove the session directory

The proxy is a HelperProcess (runtime/helper.py) whose --fd pipe is both its
readiness signal and its lifeline: it writes one byte when its sockets are
listening and exits by itself as soon as the read end, held only by the
supervisor, is closed. So it goes away with jailpy even when jailpy is
killed with SIGKILL. The session directory is claimed with a lock
(runtime/rundir.py): one left behind by a killed jailpy is removed by the next
run that makes one, as soon as no process of its run is left.
"""

from __future__ import annotations

import os

from ..errors import SetupError
from ..plan.desktop import DesktopPlan, session_base
from . import rundir
from .helper import HelperProcess
from ..plan.desktop import parse_display
from .x11 import trusted_cookie, untrusted_cookie

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan import Plan


class DesktopSession:
    """Host-side resources for one sandbox run; see the module docstring."""

    def __init__(self, plan: DesktopPlan):
        self.plan = plan
        self.env = dict(os.environ)
        self.proxy = DBusProxy(plan) if plan.proxies else None
        self.session_lock = -1
        self.locks: list[int] = []

    def open(self) -> "DesktopSession":
        """Check problems and prepare host files; on failure nothing is left behind."""
        if self.plan.problems:
            raise self.plan.problems[0].error()
        try:
            self._create_dirs()
            self._lock_app_dirs()
            if self.plan.session_dir is not None:
                self._make_session_dir(self.plan.session_dir)
            if self.plan.x11 is not None:
                self._write_cookie()
        except BaseException:
            self.close()
            raise
        return self

    def host_step(self, pid: int) -> None:
        if self.proxy is not None:
            self.proxy.start()

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.session_lock >= 0 and self.plan.session_dir:
            rundir.release(self.plan.session_dir, self.session_lock)
            self.session_lock = -1
        while self.locks:
            os.close(self.locks.pop())

    # -- pieces ------------------------------------------------------------------

    def _create_dirs(self) -> None:
        """App and read-write user dirs must exist on the host to be bound."""
        for path in self.plan.create_dirs:
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create {path}: {exc.strerror}",
                                 origin="desktop.app_dirs") from exc

    def _lock_app_dirs(self) -> None:
        """Take an exclusive flock on each app dir, or refuse to start.

        Apps guard their profiles with locks that name a host and a pid
        (Chromium's SingletonLock, LibreOffice's .lock) and a socket or pipe in
        /tmp to reach the running instance; in a sandbox with a private /tmp
        and pid namespace, a second instance finds neither and takes the same
        profile. The lock is on the directory's open file description, which
        pid 1 inherits across its forks (CLOEXEC only matters at execve): it is
        held until the last process of the sandbox is gone, even when jailpy
        itself is killed, and the kernel releases it with the last holder.
        """
        import fcntl

        for path, origin in self.plan.app_dirs:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self.locks.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SetupError(f"{path} is in use by another sandbox", origin=origin,
                                 hint="the app is already running with this profile; use "
                                 "that window, or close it first") from None
            except OSError as exc:
                raise SetupError(f"cannot lock {path}: {exc.strerror}", origin=origin) from None

    def _make_session_dir(self, path: str) -> None:
        base = os.path.dirname(path)
        expected = session_base(self.env, os.getuid())
        if base != expected:  # the plan was made for another caller
            raise SetupError(f"session directory {path} is not under {expected}",
                             origin="desktop")
        rundir.private_base(base, "desktop")
        self.session_lock = rundir.claim(path, "desktop")

    def _write_cookie(self) -> None:
        spec = self.plan.x11
        assert spec is not None
        display = parse_display(spec.display)
        assert display is not None
        if spec.untrusted:
            blob = untrusted_cookie(spec.xauthority, display, spec.file + ".new", self.env,
                                    spec.origin)
        else:
            blob = trusted_cookie(spec.xauthority, display, spec.origin)
        fd = os.open(spec.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)


def prepare(plan: "Plan") -> DesktopSession:
    """The desktop session of a plan with desktop pieces, opened."""
    assert plan.desktop is not None
    return DesktopSession(plan.desktop).open()


class DBusProxy(HelperProcess):
    """xdg-dbus-proxy for every filtered bus of the plan, in one process."""

    name = "xdg-dbus-proxy"

    def __init__(self, plan: DesktopPlan) -> None:
        assert plan.proxy_binary is not None
        super().__init__(plan.proxy_binary)
        self.plan = plan

    @property
    def origin(self) -> str:
        return "desktop.dbus" if any(p.bus == "session" for p in self.plan.proxies) \
            else "desktop.dbus_system"

    def start(self) -> None:
        """Run the proxy; return once it listens (its ready byte on the --fd pipe)."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        argv = [self.binary, f"--fd={ready_w}"]
        for proxy in self.plan.proxies:
            argv += [proxy.upstream, proxy.socket, *proxy.args]
        try:
            self.spawn(argv, (ready_w,), lifeline=ready_r)
        finally:
            os.close(ready_w)
        self.wait_ready(ready_r)

    def timed_out(self) -> SetupError:
        return self._not_started(self.read_output(limit=1) or "timed out")

    def died(self) -> SetupError:
        self._reap(block=True)
        return self._not_started(self.read_output(limit=1) or "exited")

    def _not_started(self, detail: str) -> SetupError:
        return SetupError(f"xdg-dbus-proxy did not start: {detail}", origin=self.origin,
                          hint="check the bus address (DBUS_SESSION_BUS_ADDRESS) and the rules")
