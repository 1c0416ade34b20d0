"""New session by default: the command never has the caller's terminal.

Run under a real pty (util-linux `script`), so the caller has a terminal the
sandbox could otherwise reach through /dev/tty. At a terminal the sandbox has
a pty of its own (tests/integration/test_terminal.py); with --no-tty it has
no controlling terminal at all.
"""

from __future__ import annotations

import shlex

OPEN_TTY = ("python3 -c \"import os\ntry:\n os.open('/dev/tty', os.O_RDWR); print('TTY-OPEN')\n"
            "except OSError as e: print('TTY-ERR', e.errno)\"")


def _under_pty(jailpy, *options: str) -> str:
    inner = shlex.join([jailpy.binary, "run", *options, "--", "sh", "-c", OPEN_TTY])
    result = jailpy.raw(["script", "-qec", inner, "/dev/null"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_new_session_without_a_pty_has_no_controlling_terminal(jailpy):
    out = _under_pty(jailpy, "--no-tty")
    assert "TTY-ERR 6" in out  # ENXIO: no controlling terminal


def test_new_session_at_a_terminal_has_a_pty_of_its_own(jailpy):
    inner = shlex.join([jailpy.binary, "run", "--chdir", "/", "--", "tty"])
    result = jailpy.raw(["script", "-qec", inner, "/dev/null"])
    assert result.returncode == 0, result.stdout + result.stderr
    # (script(1) may echo its end-of-input character before it)
    assert result.stdout.rstrip().endswith("/dev/pts/0")  # the sandbox's own devpts


def test_no_new_session_keeps_the_terminal_for_job_control(jailpy):
    out = _under_pty(jailpy, "--no-new-session")
    assert "TTY-OPEN" in out
