"""Core runtime: identity, namespaces, pid 1, exit status, environment, fds.

Every test runs the real CLI as the unprivileged test user on the real kernel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import children, poll, processes


def test_ids_inside_are_the_callers_by_default(jailpy, test_user):
    result = jailpy.sandbox("id -u; id -g; cat /proc/self/uid_map /proc/self/setgroups")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == str(test_user.uid)
    assert lines[1] == str(test_user.gid)
    assert lines[2].split() == [str(test_user.uid), str(test_user.uid), "1"]
    assert lines[3] == "deny"


def test_uid_zero_gives_a_root_looking_sandbox_without_capabilities(jailpy, test_user):
    result = jailpy.sandbox("id -u; id -g; cat /proc/self/uid_map; grep CapEff /proc/self/status",
                            "--uid", "0", "--gid", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(test_user.uid), "1"]
    assert lines[3].split() == ["CapEff:", "0000000000000000"]


def test_map_all_maps_the_subordinate_range(jailpy, test_user):
    result = jailpy.run(["run", "--map-all", "--", "cat", "/proc/self/uid_map"])
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert [str(test_user.uid), str(test_user.uid), "1"] in rows
    assert sum(int(r[2]) for r in rows) > 1000


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a user without subuids")
def test_map_all_without_subordinate_range_fails_clearly(jailpy_bin, user_tmp):
    from conftest import RUNUSER

    proc = subprocess.run([RUNUSER, "-u", "nobody", "--", jailpy_bin, "run", "--map-all",
                           "--", "true"], capture_output=True, text=True, cwd=user_tmp,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert proc.returncode == 125
    assert "no subordinate id range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hostname_and_uts_namespace(jailpy):
    assert jailpy.sandbox("hostname").stdout.strip() == "jailpy"
    assert jailpy.sandbox("hostname", "--hostname", "box1").stdout.strip() == "box1"
    assert jailpy.sandbox("hostname", "--share-uts").stdout.strip() == os.uname().nodename


def test_target_runs_as_pid_2_under_our_pid_1(jailpy):
    result = jailpy.sandbox("echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    assert result.returncode == 0, result.stderr
    pid, comm, count = result.stdout.split()
    assert pid == "2"
    assert comm.startswith("python") or comm == "jailpy"
    assert int(count) <= 4  # pid 1, sh, ls, grep: nothing of the host


def test_host_processes_are_invisible(jailpy):
    sleeper = subprocess.Popen(jailpy.user.command(["sleep", "60"]))
    try:
        result = jailpy.sandbox("cat /proc/[0-9]*/cmdline | tr '\\0' ' '; "
                                f"kill -0 {sleeper.pid} 2>&1; echo rc=$?")
        assert "sleep 60" not in result.stdout
        assert "rc=1" in result.stdout
    finally:
        sleeper.kill()
        sleeper.wait()


def test_orphaned_grandchildren_are_reaped(jailpy):
    # The inner sh exits at once, orphaning `sleep 0.1`; when it ends it must
    # not stay a zombie: pid 1 reaps it, and its /proc entry goes (waited for, bounded:
    # a fixed pause could look while the orphan had not even started on a loaded machine).
    script = ("orphan=$(sh -c 'sleep 0.1 >/dev/null & echo $!'); "
              "for i in $(seq 200); do [ -e /proc/$orphan ] || break; sleep 0.05; done; "
              "grep '^State:' /proc/$orphan/status 2>/dev/null || echo reaped")
    result = jailpy.sandbox(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "reaped"


def _leave_behind(marker: str) -> str:
    """bash: start `sleep 60` named marker in the background and end once it runs
    (bounded), saying so: a fixed pause could end first on a loaded machine, and the
    test would then check nothing."""
    return (f"(exec -a {marker} sleep 60) & for i in $(seq 200); do "
            f"read -r -d '' name < /proc/$!/cmdline; [ \"$name\" = {marker} ] && "
            "{ echo started; break; }; sleep 0.05; done")


def test_leftover_processes_die_with_the_target(jailpy, test_user):
    marker = "jailpy-leftover-4242"
    result = jailpy.run(["run", "--", "bash", "-c", _leave_behind(marker)])
    assert result.returncode == 0 and result.stdout == "started\n", result.stderr
    assert poll(lambda: not _running(marker, test_user.uid), 5)


@pytest.mark.parametrize("script,expected", [
    ("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("kill -9 $$", 128 + 9),
    ("kill -TERM $$", 128 + 15),
])
def test_exit_status_is_the_targets(jailpy, script, expected):
    assert jailpy.sandbox(script).returncode == expected


def test_command_not_found_is_127(jailpy):
    result = jailpy.run(["run", "--", "no-such-command-xyz"])
    assert result.returncode == 127
    assert "no-such-command-xyz: command not found" in result.stderr


def test_not_executable_is_126(jailpy):
    result = jailpy.run(["run", "--", "/etc/hostname"])
    assert result.returncode == 126
    assert "cannot execute" in result.stderr


def test_signals_are_forwarded_to_the_target(jailpy):
    proc = jailpy.popen(["run", "--", "sh", "-c",
                         "trap 'echo got-term; exit 7' TERM; echo ready; "
                         "while :; do sleep 0.05; done"],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        _jailpy_process(proc).send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert "got-term" in out
        assert proc.returncode == 7
    finally:
        proc.kill()


def _kill_supervisor(jailpy, opts: list[str], script: str, marker: str, uid: int) -> None:
    """Run `script` (it starts `marker`, then says "ready"), then SIGKILL jailpy itself,
    so that it cannot clean up: what happens to the sandbox is up to the kernel."""
    proc = jailpy.popen(["run", *opts, "--", "bash", "-c", script],
                        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert poll(lambda: _running(marker, uid), 5.0), "condition not met in time"
    os.kill(_jailpy_process(proc).pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_die_with_parent_kills_the_whole_sandbox(jailpy, test_user):
    marker = "jailpy-orphan-check-777"
    _kill_supervisor(jailpy, [], f"(exec -a {marker} sleep 60) & echo ready; wait", marker,
                     test_user.uid)
    poll(lambda: not _running(marker, test_user.uid), 5)
    assert not _running(marker, test_user.uid)
    # nor any jailpy process of that sandbox (pid 1, the namespace child)
    assert not [c for c in _user_cmdlines(test_user.uid) if "jailpy run" in c and marker in c]


def test_no_die_with_parent_keeps_the_sandbox_alive(jailpy, test_user):
    marker = "jailpy-survivor-555"
    _kill_supervisor(jailpy, ["--no-die-with-parent"], f"echo ready; exec -a {marker} sleep 3",
                     marker, test_user.uid)
    time.sleep(0.3)
    assert _running(marker, test_user.uid)


def test_environment_is_cleared_except_kept_names(jailpy):
    env = {"SECRET_TOKEN": "hunter2", "LD_PRELOAD": "/tmp/evil.so", "LC_TIME": "C",
           "KEEPME": "yes"}
    result = jailpy.run(["run", "--keep-env", "KEEPME", "--setenv", "SET1", "v1", "--", "env"],
                        env=env)
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    assert "KEEPME=yes" in lines and "SET1=v1" in lines and "LC_TIME=C" in lines
    assert not [line for line in lines if line.startswith(("SECRET_TOKEN=", "LD_PRELOAD="))]


def test_inherit_env_and_unsetenv(jailpy):
    env = {"ALPHA": "1", "BETA": "2"}
    result = jailpy.run(["run", "--inherit-env", "--unsetenv", "BETA", "--", "env"], env=env)
    lines = set(result.stdout.splitlines())
    assert "ALPHA=1" in lines
    assert "BETA=2" not in lines


def test_no_fd_leaks_except_passed_ones(jailpy):
    script = 'exec 7</etc/hostname 8</etc/hostname; exec "$@"'
    listing = ["sh", "-c", script, "sh", jailpy.binary, "run", "--pass-fd", "8", "--",
               "sh", "-c", "ls /proc/self/fd"]
    result = jailpy.raw(listing)
    assert result.returncode == 0, result.stderr
    fds = sorted(int(x) for x in result.stdout.split())
    # ls opens one directory fd of its own (3); 7 must not leak, 8 was asked for.
    assert 7 not in fds
    assert 8 in fds
    assert set(fds) <= {0, 1, 2, 3, 8}


def test_cwd_is_kept_when_visible_else_root(jailpy, user_tmp):
    assert jailpy.sandbox("pwd").stdout.strip() == "/"
    bound = jailpy.sandbox("pwd", "--bind", str(user_tmp), str(user_tmp))
    assert bound.stdout.strip() == str(user_tmp)
    explicit = jailpy.sandbox("pwd", "--chdir", "/usr/share")
    assert explicit.stdout.strip() == "/usr/share"


def test_explicit_cwd_that_does_not_exist_is_an_error(jailpy):
    result = jailpy.sandbox("pwd", "--chdir", "/no/such/dir")
    assert result.returncode == 125
    assert "/no/such/dir" in result.stderr


def test_network_namespace_has_only_loopback_and_it_is_up(jailpy):
    result = jailpy.sandbox("cat /proc/net/dev | tail -n +3 | cut -d: -f1; "
                            "cat /sys/class/net/lo/operstate 2>/dev/null; "
                            "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
                            "s.listen(); c=socket.create_connection(s.getsockname()); print(\"lo-ok\")'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "lo"
    assert "lo-ok" in result.stdout


def test_share_pid_sees_host_processes(jailpy):
    result = jailpy.sandbox("ls /proc | grep -c '^[0-9]'", "--share-pid")
    assert int(result.stdout.strip()) > 5


def _running(marker: str, uid: int) -> bool:
    """A process of uid whose argv[0] is marker (set with bash's exec -a)."""
    return any(c.startswith(marker + " ") for c in _user_cmdlines(uid))


def _user_cmdlines(uid: int) -> list[str]:
    return [raw.replace(b"\0", b" ").decode(errors="replace") for _, raw in processes(uid)]


def _jailpy_process(proc: subprocess.Popen) -> "_Proc":
    """The jailpy supervisor itself (proc may be runuser wrapping it)."""
    pid = poll(lambda: _find_descendant(proc.pid), 5, interval=0.02)
    if pid is None:
        raise AssertionError("jailpy supervisor not found")
    return _Proc(pid)


def _find_descendant(root: int) -> int | None:
    """root itself if it is jailpy, else its child that is."""
    for pid in [root, *children(root)]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/jailpy") for a in argv[:2]) and argv[0] != b"runuser":
            return pid
    return None


class _Proc:
    def __init__(self, pid: int):
        self.pid = pid

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def test_leftovers_die_with_the_target_without_a_pid_namespace(jailpy, test_user):
    marker = "jailpy-shared-pid-leftover-31"
    result = jailpy.run(["run", "--share-pid", "--", "bash", "-c", _leave_behind(marker)],
                        timeout=20)
    assert result.returncode == 0 and result.stdout == "started\n", result.stderr
    assert poll(lambda: not _running(marker, test_user.uid), 5)


def test_argv0_is_given_to_the_command(jailpy):
    result = jailpy.run(["run", "--argv0", "renamed-shell", "--", "sh", "-c", "echo $0"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "renamed-shell"  # sh -c with no operands: $0 is argv[0]
    result = jailpy.run(["run", "--argv0", "renamed-python", "--", "python3", "-c",
                         "import sys, os; print(open('/proc/self/cmdline','rb').read()"
                         ".split(b'\\0')[0].decode())"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "renamed-python"


def test_map_all_with_a_network_helper_is_refused(jailpy):
    result = jailpy.run(["run", "--map-all", "--net", "slirp4netns", "--", "true"])
    assert result.returncode == 125
    assert "identity.map_all cannot be combined with network mode 'slirp4netns'" in result.stderr
