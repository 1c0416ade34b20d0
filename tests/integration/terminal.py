"""A person at a terminal, for the interactive tests: a real pseudo-terminal
(the standard library's pty) with an interactive bash in it, running as the
test user, into which the tests type and from which they read the screen
(zsh instead of bash for the completion test: `shell`).

The bash is the *host* shell: jailpy runs in it as a job, exactly as when a
person types `jailpy run -- bash`, so the host shell's job control (Ctrl-Z,
`fg`, `&`) acts on jailpy as on any other program.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

from conftest import process_tree

PROMPT = "HOST$ "
#: Terminal control sequences (bracketed paste and the like), left out of the screen.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    def __init__(self, user, workdir: str, rows: int = 24, cols: int = 80,
                 env: dict[str, str] | None = None,
                 shell: tuple[str, ...] = ("/bin/bash", "--norc", "--noprofile", "-i")):
        pid, fd = pty.fork()
        if pid == 0:  # the host shell, as the test user, in a session of its own
            try:
                os.chdir(workdir)
                if os.geteuid() == 0:
                    os.setgroups([user.gid])
                    os.setgid(user.gid)
                    os.setuid(user.uid)
                environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": user.home,
                               "USER": user.name, "LANG": "C.UTF-8", "TERM": "xterm",
                               "PS1": PROMPT, "PROMPT_COMMAND": "", **(env or {})}
                os.execve(shell[0], list(shell), environment)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.screen = ""
        self.resize(rows, cols)
        self.expect(re.escape(PROMPT))

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def expect(self, pattern: str, timeout: float = 20) -> re.Match:
        """Read until `pattern` (a regex) shows up in what was printed since the last
        match; the text up to the match's end is consumed."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.screen)
            if found:
                self.screen = self.screen[found.end():]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen within {timeout}s; "
                                     f"the screen shows: {self.screen[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {pattern!r}: "
                                         f"{self.screen[-2000:]!r}")
                text = chunk.decode(errors="replace").replace("\r", "")
                self.screen += _ESCAPES.sub("", text)

    def run(self, command: str, timeout: float = 30) -> str:
        """Type a host-shell command, wait for the next prompt; what it printed."""
        self.line(command)
        self.expect(re.escape(command))
        return self.expect(f"(?s)(.*?){re.escape(PROMPT)}", timeout).group(1)

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal emulator does: the size on the pty, which signals the
        foreground process group with SIGWINCH."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def modes(self) -> list:
        """The host terminal's modes, as the kernel holds them (what `stty -g` prints)."""
        return termios.tcgetattr(self.fd)

    def close(self) -> None:
        """Kill the host shell and everything it started, sandboxes included (a
        failed test must leave nothing running to confuse the next one)."""
        for pid in reversed(process_tree(self.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)
