"""`jailpy run -- bash` and `jailpy run -- make` behave like any foreground job.

Every test types into a real pseudo-terminal whose interactive bash (the host
shell, as the test user) starts jailpy as a job, as a person would; the
sandbox gets a pseudo-terminal of its own (runtime/tty.py).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import termios

import pytest

from conftest import children, poll, processes
from terminal import Terminal

INNER_PROMPT = "INNER% "
#: An interactive bash inside the sandbox, with a prompt the tests can tell apart.
#: (written with an escape, so the typed command line does not look like the prompt)
INNER_BASH = "--setenv PS1 'INNER\\045 ' -- bash --norc --noprofile -i"


@pytest.fixture
def host(jailpy, test_user, user_tmp):
    terminal = Terminal(test_user, str(user_tmp))
    yield terminal
    terminal.close()


def _jailpy(jailpy, rest: str) -> str:
    return f"{shlex.quote(jailpy.binary)} run {rest}"


def _states(uid: int, marker: bytes) -> list[str]:
    """The /proc states (R, S, T, ...) of the test user's processes whose command
    line starts with `marker` (jailpy's own have the command later in theirs)."""
    states = []
    for pid, cmdline in processes(uid):
        if cmdline.startswith(marker):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                continue
    return states


def _in_foreground(uid: int, marker: bytes) -> bool:
    """Whether the process starting with `marker` is in its terminal's foreground group."""
    for pid, cmdline in processes(uid):
        if cmdline.startswith(marker):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            return fields[2] == fields[5]  # pgrp == tpgid
    return False


def _start_inner_shell(host, jailpy) -> None:
    host.line(_jailpy(jailpy, INNER_BASH))
    host.expect(re.escape(INNER_PROMPT))


def _inner(host, command: str, timeout: float = 20) -> str:
    """Run a command in the inner shell; what it printed before the next inner prompt."""
    host.line(command)
    host.expect(re.escape(command))
    return host.expect(f"(?s)(.*?){re.escape(INNER_PROMPT)}", timeout).group(1)


def test_the_shell_inside_has_job_control_and_a_tty_of_its_own(host, jailpy):
    host.line(_jailpy(jailpy, INNER_BASH))
    banner = host.expect(f"(?s)(.*?){re.escape(INNER_PROMPT)}").group(1)
    assert "no job control" not in banner and "cannot set terminal" not in banner
    assert _inner(host, "tty").strip() == "/dev/pts/0"
    assert "tty-ok" in _inner(host, "echo tty-ok > /dev/tty")
    _inner(host, "sleep 4242 &")
    assert re.search(r"\[1\]\+\s+Running\s+sleep 4242", _inner(host, "jobs"))
    host.line("fg")
    host.expect("sleep 4242")
    # Ctrl-Z only once the inner shell has handed the job its terminal.
    assert poll(lambda: _in_foreground(jailpy.user.uid, b"sleep\x004242"), 10)
    host.send("\x1a")  # Ctrl-Z: the inner job stops, the inner shell takes its prompt back
    host.expect(r"\[1\]\+\s+Stopped\s+sleep 4242")
    host.expect(re.escape(INNER_PROMPT))
    assert poll(lambda: _states(jailpy.user.uid, b"sleep\x004242") == ["T"], 10)
    _inner(host, "kill -9 %1")
    host.line("exit")
    # bash may not have noted the killed job's end yet: a second exit leaves anyway
    if "stopped jobs" in host.expect(r"HOST\$ |There are stopped jobs").group(0):
        host.line("exit")
        host.expect(r"HOST\$ ")


def test_the_readmes_jailpy_run_bash_as_written(host, jailpy):
    host.line(_jailpy(jailpy, "-- bash"))
    banner = host.expect(r"(?s)(.*?)@jailpy:/\$ ").group(1)  # bash.bashrc's prompt
    assert "no job control" not in banner
    host.line("tty; echo done-$((6*7))")
    assert "/dev/pts/0" in host.expect(r"(?s).*done-42").group(0)
    host.line("exit")
    host.expect(r"HOST\$ ")


@pytest.mark.parametrize("key", ["\x03", "\x1c"], ids=["ctrl-c", "ctrl-backslash"])
def test_interrupt_keys_stop_make_and_its_recipe(host, jailpy, user_tmp, key):
    (user_tmp / "Makefile").write_text("all:\n\tsleep 4343; echo recipe-$$((6*7))\n")
    # The README's example, as written there.
    host.line(_jailpy(jailpy, '--bind "$PWD" "$PWD" -- make'))
    assert poll(lambda: _states(jailpy.user.uid, b"sleep\x004343"), 20)
    host.send(key)
    screen = host.expect(r"(?s)(.*?)HOST\$ ", 10).group(1)
    assert "recipe-42" not in screen  # as echoed by make: recipe-$((6*7))
    assert poll(lambda: not _states(jailpy.user.uid, b"sleep\x004343"), 10)


def test_ctrl_c_stops_a_shell_script_and_its_child(host, jailpy):
    host.line(_jailpy(jailpy, "--chdir / -- sh -c 'sleep 4444; echo script-$((6*7))'"))
    assert poll(lambda: _states(jailpy.user.uid, b"sleep\x004444"), 20)
    host.send("\x03")
    screen = host.expect(r"(?s)(.*?)HOST\$ ", 10).group(1)
    assert "script-42" not in screen
    assert "status=130" in host.run("echo status=$?")  # 128 + SIGINT


def test_ctrl_z_stops_the_whole_sandbox_and_fg_resumes_it(host, jailpy):
    host.line(_jailpy(jailpy, "--chdir / -- sh -c 'sleep 4545; echo resumed'"))
    marker = b"sleep\x004545"
    assert poll(lambda: _states(jailpy.user.uid, marker), 20)
    host.send("\x1a")
    host.expect(r"\[1\]\+\s+Stopped")
    host.expect(r"HOST\$ ")
    # The host shell has its terminal back, in its own modes, while the sandbox waits.
    assert "host-shell-ok" in host.run("echo host-shell-ok")
    # The command's processes (the script and its child) are stopped, not just jailpy.
    assert poll(lambda: _states(jailpy.user.uid, marker) == ["T"], 10)
    assert poll(lambda: _states(jailpy.user.uid, b"sh\x00-c\x00sleep 4545") == ["T"], 10)
    host.line("fg")
    assert poll(lambda: _states(jailpy.user.uid, marker) == ["S"], 10)
    host.send("\x03")
    host.expect(r"HOST\$ ", 10)


def test_a_background_jailpy_does_not_get_the_next_typed_line(host, jailpy):
    host.line(_jailpy(jailpy, "--chdir / -- sh -c 'read line; echo sandbox-got-$line' &"))
    host.expect(r"HOST\$ ")
    # It stops as soon as it touches the terminal, as any background job would.
    assert poll(lambda: "Stopped" in host.run("jobs"), 10)
    out = host.run("echo typed-for-the-host-shell")
    assert "typed-for-the-host-shell" in out
    assert "Stopped" in host.run("jobs")
    # In the foreground it reads what is typed next.
    host.line("fg")
    host.expect("read line")
    host.line("for-the-sandbox")
    host.expect("sandbox-got-for-the-sandbox")
    host.expect(r"HOST\$ ")
    assert "sandbox-got-typed" not in out


def test_window_size_changes_reach_the_sandbox(host, jailpy):
    _start_inner_shell(host, jailpy)
    assert _inner(host, "stty size < /dev/tty").strip() == "24 80"
    _inner(host, "trap 'echo winch-inside' WINCH")
    host.resize(33, 101)
    host.expect("winch-inside")
    assert _inner(host, "stty size < /dev/tty").strip() == "33 101"
    host.line("exit")
    host.expect(r"HOST\$ ")


def test_host_terminal_is_raw_while_the_sandbox_runs_and_restored_after(host, jailpy):
    before = host.run("stty -g").strip()
    host.line(_jailpy(jailpy, "--chdir / -- sh -c 'sleep 4646'"))
    assert poll(lambda: _states(jailpy.user.uid, b"sleep\x004646"), 20)
    # Raw for the duration: keys go to the sandbox's own terminal, which handles them.
    lflag = poll(lambda: (host.modes()[3] & termios.ICANON) == 0, 10)
    assert lflag, "the host terminal is not in raw mode while the sandbox runs"
    for pid, cmdline in processes(jailpy.user.uid):
        if cmdline.startswith(b"sleep\x004646"):
            os.kill(pid, 9)  # the command dies of SIGKILL
    host.expect(r"HOST\$ ", 10)
    assert "status=137" in host.run("echo status=$?")
    assert host.run("stty -g").strip() == before
    # jailpy's own failure, after raw mode: the same modes again.
    host.line(_jailpy(jailpy, "-- /no/such/command"))
    host.expect(r"HOST\$ ", 10)
    assert host.run("stty -g").strip() == before


TIOCSTI = """
import fcntl, termios
try:
    for ch in b"touch {mark}\\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))
    print("sti-" + "accepted")
except OSError as exc:
    print("sti-" + "refused", exc.errno)
"""


def test_tiocsti_without_seccomp_only_reaches_the_inner_terminal(host, jailpy, user_tmp):
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
            legacy = f.read().strip() == "1"
    except OSError:
        legacy = True  # kernels before 6.2 always allow it
    if not legacy:
        pytest.skip("this kernel refuses TIOCSTI to everyone (dev.tty.legacy_tiocsti=0)")
    mark = user_tmp / "injected-into-the-host"
    script = TIOCSTI.format(mark=mark)
    host.line(_jailpy(jailpy, f"--no-seccomp --chdir / -- python3 -c {shlex.quote(script)}"))
    out = host.expect(r"(?s)(.*?)HOST\$ ", 20).group(1)
    # The ioctl works, on the sandbox's own terminal: the host shell runs nothing.
    assert "sti-accepted" in out, out
    host.run("sleep 0.5")
    assert not mark.exists()


# --- without a terminal (pipes, CI) ----------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT],
                         ids=lambda s: s.name)
def test_without_a_terminal_signals_reach_the_commands_whole_group(jailpy, sig):
    # The script waits for its child; only a signal to the whole group ends the
    # child now (the script's own trap runs after the child is gone).
    marker = f"sleep\x00{4800 + sig}".encode()
    script = f"trap 'echo trapped' {sig.name[3:]}; sleep {4800 + sig}; echo child-ended-$?"
    proc = jailpy.popen(["run", "--chdir", "/", "--", "sh", "-c", script],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert poll(lambda: _states(jailpy.user.uid, marker), 20)
    os.kill(_supervisor(proc), sig)
    out, _ = proc.communicate(timeout=20)
    assert "trapped" in out and f"child-ended-{128 + sig}" in out, out
    # A command that dies of the signal: 128 + N.
    proc = jailpy.popen(["run", "--chdir", "/", "--", "sleep", str(4900 + sig)],
                        stdin=subprocess.DEVNULL)
    assert poll(lambda: _states(jailpy.user.uid, f"sleep\x00{4900 + sig}".encode()), 20)
    os.kill(_supervisor(proc), sig)
    assert proc.wait(timeout=20) == 128 + sig


def _supervisor(proc: subprocess.Popen) -> int:
    """jailpy's own pid (proc may be runuser, whose child it is then)."""
    if os.geteuid() != 0:
        return proc.pid
    return poll(lambda: (children(proc.pid) or [None])[0], 5)


# --- the working directory -------------------------------------------------------------


def test_an_invisible_cwd_is_named_on_stderr_with_the_fix(jailpy, user_tmp):
    result = jailpy.sandbox("pwd")
    assert result.stdout.strip() == "/"
    notes = [line for line in result.stderr.splitlines() if str(user_tmp) in line]
    assert len(notes) == 1 and '--bind "$PWD" "$PWD"' in notes[0] and "--workspace" in notes[0]
    for options in (["--chdir", "/"], ["--bind", str(user_tmp), str(user_tmp)]):
        assert jailpy.sandbox("pwd", *options).stderr == ""


def test_descriptors_that_are_not_the_terminal_pass_through(host, jailpy):
    # stdout is a pipe: the command's own bytes, no terminal's \r\n; stdin is still
    # the terminal, so the sandbox has its pty (stderr shows it).
    out = host.run(_jailpy(jailpy, "--chdir / -- sh -c 'printf \"a\\nb\\n\"; tty >&2' | od -c"))
    assert re.search(r"a\s+\\n\s+b\s+\\n", out), out
    assert "/dev/pts/0" in out
