"""Fixtures for the escape suite: compiled helpers, the probe, host-side victims.

Every attack runs the same probe code twice: inside the `default` profile
(as the unprivileged test user) and, as the counterpart, outside the sandbox
as the same user, so an attack test can only pass when the sandbox is what
stops the attack.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SIGSYS_STATUS = 128 + signal.SIGSYS

if platform.machine() != "x86_64":  # pragma: no cover
    pytest.skip("the escape suite's raw syscalls and i386/x32 helpers are x86_64-only",
                allow_module_level=True)

_C_HELPERS = {
    # getpid through the i386 entry point, from 64-bit code.
    "i386_getpid": r"""
#include <stdio.h>
int main(void) {
    long ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "r8", "r9", "r10", "r11", "memory");
    printf("{\"ok\": true, \"value\": %ld}\n", ret);
    return 0;
}
""",
    # getpid (39) with the x32 bit set.
    "x32_getpid": r"""
#include <stdio.h>
int main(void) {
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(0x40000000L | 39L) : "rcx", "r11", "memory");
    if (ret < 0) printf("{\"ok\": false, \"errno\": %ld}\n", -ret);
    else printf("{\"ok\": true, \"value\": %ld}\n", ret);
    return 0;
}
""",
}
_PRELOAD = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void hello(void) {
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    fprintf(stderr, "PRELOADED on %s\n", host);
}
"""


@dataclass(frozen=True)
class Helpers:
    dir: Path
    compiled: bool

    @property
    def probe(self) -> str:
        return str(self.dir / "probe.py")

    def binary(self, name: str) -> str:
        if not self.compiled:
            pytest.skip("gcc is not available to build the i386/x32/preload helpers")
        return str(self.dir / name)


@pytest.fixture(scope="session")
def helpers() -> Helpers:
    """A world-readable directory with probe.py and the compiled helpers."""
    path = Path(tempfile.mkdtemp(prefix="jailpy-sec-", dir="/var/tmp"))
    path.chmod(0o755)
    shutil.copy(HERE / "probe.py", path / "probe.py")
    compiled = shutil.which("gcc") is not None
    if compiled:
        for name, source in _C_HELPERS.items():
            (path / f"{name}.c").write_text(source)
            subprocess.run(["gcc", "-O0", "-o", str(path / name), str(path / f"{name}.c")],
                           check=True)
        (path / "preload.c").write_text(_PRELOAD)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path / "preload.so"),
                        str(path / "preload.c")], check=True)
    for item in path.iterdir():
        item.chmod(0o755)
    yield Helpers(path, compiled)
    shutil.rmtree(path, ignore_errors=True)


def parse(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if "{" in line:
            return json.loads(line[line.index("{"):])
    raise AssertionError(f"the probe printed no result: {stdout!r}")


class Attack:
    """Runs probe attacks inside the default profile and outside, as the test user."""

    def __init__(self, jailpy, helpers: Helpers):
        self.jailpy = jailpy
        self.helpers = helpers

    def inside(self, *args: str, options: tuple[str, ...] = (), program: str | None = None,
               **kwargs):
        cmd = [program] if program else ["python3", self.helpers.probe]
        h = str(self.helpers.dir)
        return self.jailpy.run(["run", "--ro-bind", h, h, *options, "--", *cmd, *args],
                               **kwargs)

    def outside(self, *args: str, program: str | None = None, wrap: tuple[str, ...] = (),
                **kwargs):
        cmd = [program] if program else ["python3", self.helpers.probe]
        return self.jailpy.raw([*wrap, *cmd, *args], **kwargs)

    def refused(self, *args: str, options: tuple[str, ...] = (), **kwargs) -> str:
        """Run inside; assert it failed and return the errno name."""
        result = self.inside(*args, options=options, **kwargs)
        assert result.returncode == 0, result.stderr
        verdict = parse(result.stdout)
        assert verdict["ok"] is False, f"attack succeeded inside: {verdict}"
        return verdict["errno"]

    def works_outside(self, *args: str, **kwargs) -> dict:
        result = self.outside(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        verdict = parse(result.stdout)
        assert verdict["ok"] is True, f"counterpart failed outside: {verdict} {result.stderr}"
        return verdict


@pytest.fixture
def attack(jailpy, helpers) -> Attack:
    return Attack(jailpy, helpers)


def _demote(uid: int, gid: int):
    def preexec() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
    return preexec


@pytest.fixture
def victim(test_user):
    """A host process owned by the test user (the pid the sandbox must not reach)."""
    procs: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv or ("sleep", "60")),
                                preexec_fn=_demote(test_user.uid, test_user.gid),
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def host_listeners():
    """An abstract unix socket and a TCP socket on 127.0.0.1, listening on the host."""
    name = f"jailpy-test-{uuid.uuid4().hex[:8]}"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + name)
    unix.listen(8)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    yield name, tcp.getsockname()[1]
    unix.close()
    tcp.close()
