"""Host side of the desktop pieces: session directory, X cookie, D-Bus proxy.

One session per sandbox run, used as a context manager by Sandbox.run:

    __enter__   fail on any non-optional Problem (exit 125); create missing
                app/user dirs; make the private session directory
                ($XDG_RUNTIME_DIR/jailpy/PID-RANDOM, else /tmp/jailpy-UID/...,
                0700) and write the filtered X cookie into it
    host step   start xdg-dbus-proxy (once the namespace child has unshared,
                before it may build its root): the proxy listens on sockets in
                the session directory, which the plan binds into the sandbox
    __exit__    stop the proxy, remove the session directory

The proxy gets the write end of a pipe with --fd: it writes one byte when its
sockets are listening and exits by itself as soon as the read end, held only
by the supervisor, is closed. So it goes away with jailpy even when jailpy is
killed with SIGKILL. Session directories left behind by a killed jailpy are
removed by the next run (their PID is gone).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import subprocess
from typing import Callable

from ..errors import SetupError
from ..plan.desktop import DesktopPlan, session_base
from .x11 import parse_display, trusted_cookie, untrusted_cookie

#: How long xdg-dbus-proxy may take to open its sockets.
PROXY_READY_TIMEOUT = 10.0


class DesktopSession:
    """Host-side resources for one sandbox run; see the module docstring."""

    def __init__(self, plan: DesktopPlan, env: dict[str, str] | None = None):
        self.plan = plan
        self.env = dict(os.environ if env is None else env)
        self.proxy: subprocess.Popen | None = None
        self.proxy_fd: int | None = None
        self.created_session = False

    # -- context manager -------------------------------------------------------

    def __enter__(self) -> "DesktopSession":
        return self.open()

    def open(self) -> "DesktopSession":
        """Check problems and prepare host files; on failure nothing is left behind."""
        if self.plan.problems:
            raise self.plan.problems[0].error()
        try:
            self._create_dirs()
            if self.plan.session_dir is not None:
                self._make_session_dir(self.plan.session_dir)
            if self.plan.x11 is not None:
                self._write_cookie()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host_steps(self) -> tuple[Callable[[int], None], ...]:
        return (self.start_proxy,) if self.plan.proxies else ()

    # -- pieces ------------------------------------------------------------------

    def _create_dirs(self) -> None:
        """App and read-write user dirs must exist on the host to be bound."""
        for path in self.plan.create_dirs:
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create {path}: {exc.strerror}",
                                 origin="desktop.app_dirs") from exc

    def _make_session_dir(self, path: str) -> None:
        base = os.path.dirname(path)
        expected = session_base(self.env, os.getuid())
        if base != expected:  # the plan was made for another caller
            raise SetupError(f"session directory {path} is not under {expected}",
                             origin="desktop")
        _private_dir(base)
        _sweep_stale(base)
        os.mkdir(path, 0o700)
        self.created_session = True

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

    def start_proxy(self, _pid: int) -> None:
        """Host step: run xdg-dbus-proxy for every filtered bus; wait until it listens."""
        plan = self.plan
        assert plan.proxy_binary is not None and plan.session_dir is not None
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        argv = [plan.proxy_binary, f"--fd={ready_w}"]
        for proxy in plan.proxies:
            argv += [proxy.upstream, proxy.socket, *proxy.args]
        log_path = os.path.join(plan.session_dir, "dbus-proxy.log")
        try:
            with open(log_path, "wb") as log:
                self.proxy = subprocess.Popen(argv, pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=log, env=self.env,
                                              start_new_session=True)
        except OSError as exc:
            os.close(ready_r)
            raise SetupError(f"cannot start xdg-dbus-proxy: {exc.strerror}",
                             origin=_origin(plan), hint="install the 'xdg-dbus-proxy' package") \
                from exc
        finally:
            os.close(ready_w)
        self.proxy_fd = ready_r
        readable, _, _ = select.select([ready_r], [], [], PROXY_READY_TIMEOUT)
        byte = os.read(ready_r, 1) if readable else b""
        if byte:
            return
        detail = _last_line(log_path) or ("timed out" if not readable else "exited")
        self._stop_proxy()
        raise SetupError(f"xdg-dbus-proxy did not start: {detail}", origin=_origin(plan),
                         hint="check the bus address (DBUS_SESSION_BUS_ADDRESS) and the rules")

    # -- teardown ------------------------------------------------------------------

    def _stop_proxy(self) -> None:
        if self.proxy_fd is not None:
            os.close(self.proxy_fd)  # the proxy exits on its own when this closes
            self.proxy_fd = None
        if self.proxy is not None:
            try:
                self.proxy.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proxy.send_signal(signal.SIGKILL)
                self.proxy.wait()
            self.proxy = None

    def close(self) -> None:
        self._stop_proxy()
        if self.created_session and self.plan.session_dir:
            shutil.rmtree(self.plan.session_dir, ignore_errors=True)
            self.created_session = False


def _origin(plan: DesktopPlan) -> str:
    return "desktop.dbus" if any(p.bus == "session" for p in plan.proxies) \
        else "desktop.dbus_system"


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _private_dir(path: str) -> None:
    """Create `path` 0700, or check that the existing one is ours and private."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SetupError(f"cannot create {path}: {exc.strerror}", origin="desktop") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SetupError(f"{path} is not a private directory owned by uid {os.getuid()}",
                         origin="desktop",
                         hint="remove it, or set XDG_RUNTIME_DIR to your own runtime directory")


def _sweep_stale(base: str) -> None:
    """Remove session directories of jailpy processes that no longer exist."""
    for name in os.listdir(base):
        pid, sep, _ = name.partition("-")
        if not sep or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
