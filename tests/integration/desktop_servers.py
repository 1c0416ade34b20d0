"""Real desktop servers for the desktop tests, run as the unprivileged test user.

Xvfb, dbus-daemon (with small python-dbus services), weston (headless),
pulseaudio and pipewire are started by the tests themselves, each in its own
process group so a test can stop exactly what it started. Readiness is
awaited with bounded polls, never with fixed sleeps alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable

from conftest import TestUser, as_user_file, children, poll

SERVICE_PY = r'''
import sys
import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

DBusGMainLoop(set_as_default=True)
name, address = sys.argv[1], sys.argv[2]
bus = dbus.bus.BusConnection(address)


class Service(dbus.service.Object):
    @dbus.service.method("org.jailpytest.Iface", out_signature="s")
    def Ping(self):
        return "pong from " + name

    @dbus.service.method("org.jailpytest.Iface", out_signature="s")
    def Secret(self):
        return "secret of " + name


keep = dbus.service.BusName(name, bus, do_not_queue=True)
Service(keep, "/org/jailpytest")
print("ready", flush=True)
GLib.MainLoop().run()
'''


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05) -> object:
    """Poll until predicate() is truthy; bounded."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value


def child_of(pid: int) -> int:
    """The process runuser started (jailpy itself), when the test runs as root."""
    if os.geteuid() != 0:
        return pid
    return int(wait_for(lambda: (children(pid) or [0])[0], 10, f"the child of {pid}"))


class Server:
    """A process started as the test user in its own process group."""

    def __init__(self, user: TestUser, argv: list[str], env: dict[str, str], log: Path,
                 **kwargs):
        self.log = log
        # runuser resets HOME to the user's own; `env` puts the test's back.
        argv = ["env", f"HOME={env['HOME']}", *argv]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(user.command(argv), env=env, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Signal the server itself: runuser, signalled, waits 2 s before it kills.
            targets = children(self.proc.pid) if os.geteuid() == 0 else [self.proc.pid]
            for pid in targets or [self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def user_env(user: TestUser, home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), "USER": user.name,
           "LANG": "C.UTF-8"}
    env.update(extra)
    return env


class Xvfb:
    """An X server that requires a cookie; Xvfb picks a free display itself (-displayfd).

    The server loads every cookie in its -auth file whatever display it names,
    so the cookie is written before the display number is known; the clients'
    Xauthority file then gets it under the real display number, beside a cookie
    for another display that the sandbox must not receive.
    """

    def __init__(self, user: TestUser, workdir: Path, name: str = "x",
                 extra_args: tuple[str, ...] = ()):
        self.cookie = secrets.token_hex(16)
        env = user_env(user, workdir)
        server_auth = workdir / f"{name}.server-auth"
        as_user_file(server_auth, "", user, 0o600)
        subprocess.run(user.command(["xauth", "-f", str(server_auth), "add", ":0", ".",
                                     self.cookie]), check=True, capture_output=True, env=env)
        read_fd, write_fd = os.pipe()
        argv = ["Xvfb", "-displayfd", str(write_fd), "-auth", str(server_auth),
                "-nolisten", "tcp", "-noreset", "-screen", "0", "400x300x24", *extra_args]
        self.server = Server(user, argv, env, workdir / f"{name}.log", pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number.isdigit():
            self.server.stop()
            raise AssertionError(f"Xvfb did not start: {self.server.log.read_text()[-500:]}")
        self.number = number
        self.display = f":{number}"
        self.xauthority = workdir / f"{name}.xauth"
        as_user_file(self.xauthority, "", user, 0o600)
        self.add_cookie(user, self.xauthority, self.display, self.cookie)

    @staticmethod
    def add_cookie(user: TestUser, xauthority: Path, display: str, cookie: str) -> None:
        subprocess.run(user.command(["xauth", "-f", str(xauthority), "add", display, ".",
                                     cookie]), check=True, capture_output=True,
                       env=user_env(user, xauthority.parent))

    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display, "XAUTHORITY": str(self.xauthority)}

    def stop(self) -> None:
        self.server.stop()


class SessionBus:
    """A dbus-daemon on a unix socket in `workdir`, plus python-dbus services."""

    def __init__(self, user: TestUser, workdir: Path, name: str = "bus"):
        self.user = user
        self.workdir = workdir
        self.socket = workdir / name
        self.address = f"unix:path={self.socket}"
        self.server = Server(user, ["dbus-daemon", "--session", f"--address={self.address}",
                                    "--nofork", "--nopidfile", "--nosyslog"],
                             user_env(user, workdir), workdir / f"{name}.log")
        wait_for(lambda: self.socket.exists(), 10, "dbus-daemon's socket")
        self.script = as_user_file(workdir / "service.py", SERVICE_PY, user)
        self.services: list[Server] = []

    def serve(self, bus_name: str) -> None:
        log = self.workdir / f"{bus_name}.log"
        service = Server(self.user, ["/usr/bin/python3", str(self.script), bus_name,
                                     self.address], user_env(self.user, self.workdir), log)
        self.services.append(service)
        wait_for(lambda: "ready" in log.read_text() or not service.alive(), 10,
                 f"the {bus_name} service")
        assert service.alive(), log.read_text()

    def stop(self) -> None:
        for service in self.services:
            service.stop()
        self.server.stop()


class RuntimeServers:
    """weston (headless), pulseaudio and pipewire in a private XDG_RUNTIME_DIR."""

    def __init__(self, user: TestUser, workdir: Path):
        self.runtime = workdir / "runtime"
        self.home = workdir / "serverhome"
        for path in (self.runtime, self.home):
            path.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(path, user.uid, user.gid)
        env = user_env(user, self.home, XDG_RUNTIME_DIR=str(self.runtime))
        self.env_base = env
        self.servers = []
        self.wayland_display = "wayland-jailpytest"
        if shutil.which("weston"):
            self.servers.append(Server(user, ["weston", "--backend=headless-backend.so",
                                              f"--socket={self.wayland_display}",
                                              "--idle-time=0", "--shell=desktop-shell.so"],
                                       env, workdir / "weston.log"))
        if shutil.which("pulseaudio"):
            self.servers.append(Server(user, ["pulseaudio", "-n", "--daemonize=no",
                                              "--exit-idle-time=-1",
                                              "-L", "module-native-protocol-unix",
                                              "-L", "module-null-sink"],
                                       env, workdir / "pulse.log"))
        if shutil.which("pipewire"):
            self.servers.append(Server(user, ["pipewire"], env, workdir / "pipewire.log"))

    def wait(self, *names: str) -> None:
        for name in names:
            wait_for(lambda: (self.runtime / name).exists(), 15, f"socket {name}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
