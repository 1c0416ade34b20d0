"""Shared test harness.

Integration tests run the real `jailpy` CLI, installed by scripts/setup.sh in
a world-readable venv, as an unprivileged user: the test user when pytest
runs as root (CI), or the current user when a developer runs pytest as
themselves. Nothing the kernel does is mocked.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge results, not speed: on a loaded 2-core CI machine one
# example can take longer than Hypothesis' default 200 ms deadline, and drawing
# examples longer than its too_slow health check allows, through no fault of
# the code. Every settings object made after this inherits both.
settings.register_profile("loaded-machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")

VENV = Path(os.environ.get("JAILPY_VENV", "/opt/jailpy/venv"))
TEST_USER = os.environ.get("JAILPY_TEST_USER", "jailpy-test")
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"


def _jailpy_binary() -> str:
    candidate = VENV / "bin" / "jailpy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("jailpy")
    if found is None:
        raise RuntimeError("jailpy is not installed: run scripts/setup.sh first")
    return found


@dataclass(frozen=True)
class TestUser:
    """The unprivileged account integration tests act as."""

    name: str
    uid: int
    gid: int
    home: str

    def command(self, argv: list[str]) -> list[str]:
        """argv run as this user (via runuser when we are root)."""
        if os.geteuid() != 0:
            return argv
        return [RUNUSER, "-u", self.name, "--", *argv]


@pytest.fixture(scope="session")
def test_user() -> TestUser:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(TEST_USER)
    else:
        entry = pwd.getpwuid(os.geteuid())
    return TestUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@pytest.fixture(scope="session")
def jailpy_bin() -> str:
    return _jailpy_binary()


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Runs jailpy (or any command) as the test user in a scratch directory."""

    def __init__(self, user: TestUser, binary: str, workdir: Path):
        self.user = user
        self.binary = binary
        self.workdir = workdir
        self.started: list[subprocess.Popen] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.user.home, "USER": self.user.name, "LOGNAME": self.user.name,
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(self, args: list[str], *, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            **kwargs) -> Completed:
        """`jailpy ARGS...` as the test user."""
        return self.raw([self.binary, *args], input=input, timeout=timeout, env=env, cwd=cwd,
                        **kwargs)

    def raw(self, argv: list[str], *, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            **kwargs) -> Completed:
        """Any command as the test user (for counterpart tests outside the sandbox)."""
        proc = subprocess.run(self.user.command(argv), input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env(env),
                              cwd=str(cwd or self.workdir), **kwargs)
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, args: list[str], env: dict[str, str] | None = None,
              **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.user.command([self.binary, *args]), env=self.env(env),
                                cwd=str(self.workdir), **kwargs)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        """Kill whatever a test started and left running (a failed test must not
        leave sandboxes behind to confuse the next one)."""
        for proc in self.started:
            for pid in reversed(process_tree(proc.pid)):
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def sandbox(self, script: str, *options: str, **kwargs) -> Completed:
        """Run a shell script in the sandbox: jailpy run OPTIONS -- sh -c SCRIPT."""
        return self.run(["run", *options, "--", "sh", "-c", script], **kwargs)


#: The one line jailpy prints when the caller's directory is not visible in the
#: sandbox (tests/integration/test_terminal.py checks it; runs from a scratch
#: directory print it, and tests about something else leave it out).
CWD_NOTE_PREFIX = "jailpy: note: "
CWD_NOTE_SUFFIX = ' is not visible in the sandbox, starting in /; add --bind "$PWD" "$PWD" ' \
                  'or --workspace "$PWD" to work there'


def without_cwd_note(stderr: str) -> str:
    """stderr less jailpy's note that the current directory is not visible inside."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not (line.startswith(CWD_NOTE_PREFIX)
                           and line.rstrip("\n").endswith(CWD_NOTE_SUFFIX)))


@pytest.fixture
def user_tmp(test_user: TestUser):
    """A scratch directory owned by the test user, outside any private path."""
    path = Path(tempfile.mkdtemp(prefix="jailpy-test-", dir="/var/tmp"))
    if os.geteuid() == 0:
        os.chown(path, test_user.uid, test_user.gid)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def jailpy(test_user: TestUser, jailpy_bin: str, user_tmp: Path):
    runner = Runner(test_user, jailpy_bin, user_tmp)
    yield runner
    runner.cleanup()


def children(pid: int) -> list[int]:
    """pid's children ([] once it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def comm(pid: int) -> str:
    """pid's command name ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_tree(root: int) -> list[int]:
    """root and all its descendants, parents first."""
    found = [root]
    for pid in found:
        found.extend(children(pid))
    return found


def processes(uid: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(pid, raw /proc/PID/cmdline) of every process (of `uid`, if given).

    Processes that end while being read are passed over: the tests look for
    what is still running.
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if uid is not None and os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                yield int(entry), f.read()
        except OSError:
            continue


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """predicate()'s first truthy value within `timeout` seconds, else its last value.

    Tests wait on processes and sockets they do not control the timing of;
    the bound keeps a broken sandbox from hanging the suite.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def as_user_file(path: Path, content: str, user: TestUser, mode: int = 0o644) -> Path:
    """Write a file owned by the test user (for planting attack fixtures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, user.uid, user.gid)
    return path


def chown_tree(path: Path, user: TestUser) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), user.uid, user.gid)
    os.lchown(path, user.uid, user.gid)


