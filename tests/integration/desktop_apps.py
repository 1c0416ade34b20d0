"""Driving the real desktop apps in the tests: sandboxes started in the
background, their windows on Xvfb, Chromium's DevTools pipe, test files.

The apps are installed by scripts/setup.sh; nothing here skips when one is
missing. Every wait is a bounded poll.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from conftest import TestUser, as_user_file, chown_tree, poll
from desktop_servers import Xvfb, child_of, wait_for

#: A one-page PDF whose page says "jailpy pdf" (written by hand: no PDF writer needed).
_PDF_OBJECTS = ("<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
                "/Resources << /Font << /F1 5 0 R >> >> >>",
                None,
                "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
_PDF_TEXT = b"BT /F1 24 Tf 40 100 Td (jailpy pdf) Tj ET"


def pdf_bytes() -> bytes:
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(_PDF_OBJECTS, 1):
        offsets.append(len(out))
        raw = (f"<< /Length {len(_PDF_TEXT)} >>\nstream\n".encode() + _PDF_TEXT +
               b"\nendstream") if body is None else body.encode()
        out += f"{number} 0 obj\n".encode() + raw + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return out


class Desk:
    """An X display and a home for one test, and the commands to look at both."""

    def __init__(self, user: TestUser, workdir: Path, jailpy_bin: str):
        self.user = user
        self.workdir = workdir
        self.jailpy_bin = jailpy_bin
        self.home = workdir / "home"
        for sub in ("Documents", "Videos", "Downloads"):
            (self.home / sub).mkdir(parents=True)
        chown_tree(self.home, user)
        self.x = Xvfb(user, workdir, "x")
        self.started: list[Sandboxed] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(self.home),
                "USER": self.user.name, "LOGNAME": self.user.name, "LANG": "C.UTF-8",
                **self.x.env(), **extra}

    def file(self, relative: str, content: str | bytes, mode: int = 0o644) -> Path:
        path = self.home / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
            if os.geteuid() == 0:
                os.chown(path, self.user.uid, self.user.gid)
            return path
        return as_user_file(path, content, self.user, mode)

    def command(self, argv: list[str]) -> list[str]:
        """argv as the test user with this desk's HOME (runuser resets HOME)."""
        return self.user.command(["env", f"HOME={self.home}", *argv])

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), env=self.env(), capture_output=True,
                              text=True, timeout=timeout, cwd=self.workdir)

    def launch(self, argv: list[str], name: str) -> int:
        """Run a launcher that spawns and leaves (`gio launch`): its output goes
        to a log, as what it spawns inherits it and outlives it."""
        with open(self.workdir / f"{name}.log", "wb") as out:
            return subprocess.run(self.command(argv), env=self.env(), stdout=out, stderr=out,
                                  stdin=subprocess.DEVNULL, timeout=30,
                                  cwd=self.workdir).returncode

    def jailpy(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run([self.jailpy_bin, *args], timeout)

    def start(self, args: list[str], name: str, devtools: "DevTools | None" = None,
              jailpy: bool = True) -> "Sandboxed":
        """`jailpy ARGS` (or a plain command) in the background, output in a log."""
        argv = [self.jailpy_bin, *args] if jailpy else args
        app = Sandboxed(self, argv, self.workdir / f"{name}.log", devtools)
        self.started.append(app)
        return app

    # -- the screen ---------------------------------------------------------------

    def titles(self) -> list[str]:
        found = self.run(["xdotool", "search", "--name", ".", "getwindowname", "%@"], 10)
        return [line for line in found.stdout.splitlines() if line]

    def wait_title(self, pattern: str, timeout: float = 90) -> str:
        """The first window title matching `pattern` (a regex), waiting for it."""
        regex = re.compile(pattern)
        seen: list[list[str]] = [[]]

        def look() -> str | None:
            seen[0] = self.titles()
            return next((t for t in seen[0] if regex.search(t)), None)

        found = poll(look, timeout, 0.5)
        assert found, f"no window matching {pattern!r}; windows: {seen[0]}"
        return found

    def window_id(self, pattern: str, timeout: float = 30) -> str:
        """The id of a window whose title matches `pattern`, waiting for one: a title
        seen a moment ago may be changing (a page loading, a session restored)."""
        def look() -> str | None:
            found = self.run(["xdotool", "search", "--name", pattern], 10)
            return next(iter(found.stdout.split()), None)

        window = poll(look, timeout, 0.5)
        assert window, f"no window matching {pattern!r}; windows: {self.titles()}"
        return window

    def pixel(self, window: str, x: int, y: int) -> tuple[int, int, int]:
        """One pixel of a window, read back from the X server (ImageMagick import)."""
        out = self.run(["import", "-window", window, "-crop", f"1x1+{x}+{y}", "txt:-"], 30)
        depth = re.search(r"enumeration: \d+,\d+,(\d+),", out.stdout)
        match = re.search(r"\((\d+),(\d+),(\d+)", out.stdout.splitlines()[-1])
        assert depth and match, out.stdout + out.stderr
        scale = int(depth[1]) / 255
        return tuple(round(int(match[i]) / scale) for i in (1, 2, 3))

    def type_into(self, window: str, *keys: str, window_may_go: bool = False) -> bool:
        """Focus a window (no window manager: XSetInputFocus) and send it keys;
        a key starting with '+' is typed as text. With `window_may_go` (an app
        that may be closing the window, as a restarting browser does), a window
        that can no longer take the focus is an answer (False), not a failure."""
        steps = [["windowfocus", "--sync", window]]
        # One xdotool call each: `type` would take every word after it as text.
        steps += [["type", key[1:]] if key.startswith("+") else ["key", key] for key in keys]
        for step in steps:
            result = self.run(["xdotool", *step], 30)
            if window_may_go and result.returncode != 0 and step[0] == "windowfocus":
                return False
            assert result.returncode == 0, result.stderr
        return True

    def stop(self) -> None:
        for app in reversed(self.started):
            app.stop()
            # Shown by pytest when the test failed.
            print(f"--- {app.log.name} (last lines)\n{app.output()[-3000:]}")
        self.x.stop()


class Sandboxed:
    """One background process tree started by a test, stopped by it."""

    def __init__(self, desk: Desk, argv: list[str], log: Path, devtools: "DevTools | None"):
        self.log = log
        extra = {} if devtools is None else {"pass_fds": (3, 4), "preexec_fn": devtools.preexec}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(desk.command(argv), env=desk.env(), stdout=out,
                                         stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=desk.workdir, **extra)
        if devtools is not None:
            devtools.started()
        self.pid = child_of(self.proc.pid)  # jailpy (or the command) itself

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def processes(self, needle: str) -> list[int]:
        """Processes of this tree whose command line contains `needle`, jailpy's own
        left out (its command line, and its forks', contain the sandboxed command)."""
        return [pid for pid in tree(self.proc.pid) if needle in cmdline(pid)
                and not any(word.endswith("/jailpy") for word in cmdline(pid).split(" ")[:2])]

    def kill(self) -> None:
        """SIGKILL to jailpy: the sandbox dies with it (die-with-parent)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, and once more for what outlives the command (with wait_all the
        second one reaches every process left), then SIGKILL."""
        for grace in (5, 10):
            if self.proc.poll() is not None:
                return
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


class Launched:
    """A sandbox started by a menu launcher, which exits at once (`gio launch`
    spawns the entry's Exec= and returns): found by its jailpy process, the
    one whose HOME is this desk's home."""

    def __init__(self, desk: Desk, profile: str, timeout: float = 30):
        words = f"{desk.jailpy_bin} run --profile {profile} -- "
        home = f"\0HOME={desk.home}\0".encode()

        def outermost() -> list[int]:
            found = [pid for pid in _all_pids()
                     if words in cmdline(pid) and home in _environ(pid)]
            return [pid for pid in found if _parent(pid) not in found]

        self.pid = wait_for(outermost, timeout, f"jailpy run --profile {profile}")[0]

    def processes(self, needle: str) -> list[int]:
        return [pid for pid in tree(self.pid) if needle in cmdline(pid)]

    def stop(self) -> None:
        """SIGTERM to jailpy (twice: wait_all passes the second to what is left)."""
        for _ in range(2):
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            if poll(lambda: not os.path.exists(f"/proc/{self.pid}"), 10, 0.1):
                return
        os.kill(self.pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    """A process's command line, words joined by spaces ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def tree(root: int) -> list[int]:
    """root and its descendants, including children forked by any thread (Firefox
    starts its content processes from a launcher thread; conftest.process_tree
    reads the main thread's children only)."""
    found = [root]
    for pid in found:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found.extend(int(child) for child in f.read().split())
            except OSError:
                pass
    return found


def unlocked(app_dir: Path) -> bool:
    """Whether no sandbox holds jailpy's lock on an app dir (an flock on the directory,
    which the test takes and drops at once)."""
    import fcntl

    fd = os.open(app_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def seccomp_filters(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp_filters:"):
                return int(line.split()[1])
    return 0


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fds 3 and 4 of
    the browser, passed through jailpy with --pass-fd): NUL-terminated JSON."""

    def __init__(self) -> None:
        self._to_browser_r, self._to_browser_w = os.pipe()
        self._from_browser_r, self._from_browser_w = os.pipe()
        self._buffer = b""
        self._next = 0

    def preexec(self) -> None:
        """In the child, before exec: the browser's ends at fds 3 and 4, where
        Chromium looks for them (Popen keeps them open with pass_fds=(3, 4))."""
        import fcntl

        # Above 4 first, so neither end is overwritten by the other's dup2.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
                for fd in (self._to_browser_r, self._from_browser_w)]
        os.dup2(ends[0], 3)
        os.dup2(ends[1], 4)

    def started(self) -> None:
        """The browser has its ends; ours see end-of-file when it goes away."""
        os.close(self._to_browser_r)
        os.close(self._from_browser_w)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser_w, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                ready = poll(lambda: _readable(self._from_browser_r), timeout, 0.05)
                assert ready, f"no DevTools answer to {method}"
                chunk = os.read(self._from_browser_r, 65536)
                assert chunk, f"the browser closed its DevTools pipe during {method}"
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                assert "error" not in reply, reply
                return reply["result"]

    def page_text(self, url: str, until: str, timeout: float = 60) -> str:
        """Open `url` in a new tab; its text once it contains `until`."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        text = [""]

        def loaded() -> bool:
            result = self.call("Runtime.evaluate", {"expression": "document.body.innerText"},
                               session)
            text[0] = result["result"].get("value") or ""
            return until in text[0]

        wait_for(loaded, timeout, f"{url} to show {until!r}", interval=0.2)
        return text[0]

    def close(self) -> None:
        for fd in (self._to_browser_w, self._from_browser_r):
            try:
                os.close(fd)
            except OSError:
                pass


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])
