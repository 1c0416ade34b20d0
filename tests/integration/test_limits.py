"""Resource limits on the real kernel, as the unprivileged test user.

Every limit is shown doing its job on a program that would otherwise run
away: a fork bomb, a memory hog, an endless loop, a disk filler, a CPU
burner. Where the claim is "jailpy stopped it", a counterpart shows the same
program succeeding without the limit. Runs stay short: each program is
bounded by its limit, and every call has a subprocess timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import as_user_file, children, poll, without_cwd_note

#: A fork bomb that records, from inside, the most processes it ever saw.
BOMB = r"""
import os, sys, time
out, seconds = sys.argv[1], float(sys.argv[2])
if os.fork() == 0:
    while True:                     # every process keeps forking, forever
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
end, peak = time.monotonic() + seconds, 0
while time.monotonic() < end:
    peak = max(peak, sum(1 for e in os.listdir("/proc") if e.isdigit()))
    with open(out + ".tmp", "w") as f:
        f.write(str(peak))
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""
HOG = "chunks = [bytearray(16 << 20) for _ in range(32)]; print('allocated', len(chunks) * 16, 'MiB')"


def _marker() -> str:
    return f"jailpy-limit-test-{uuid.uuid4().hex[:12]}"


def _leftovers(marker: str) -> str:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
    return found.stdout.strip()


def _status(completed) -> dict:
    """The JSON object --json-status - appended to stdout."""
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _supervisor_pid(popen_pid: int) -> int | None:
    """The jailpy process itself: Runner.popen starts it under runuser when we are root
    (None until runuser has forked it)."""
    if os.geteuid() != 0:
        return popen_pid
    return (children(popen_pid) or [None])[0]


def _with_env(jailpy, env: dict[str, str], args: list[str], **kwargs):
    """jailpy ARGS with extra environment (through env(1): runuser resets some)."""
    pairs = [f"{k}={v}" for k, v in env.items()]
    return jailpy.raw(["env", *pairs, jailpy.binary, *args], **kwargs)


@pytest.fixture(scope="module")
def cgroup_parent():
    """Skip cgroup tests (with the reason) when no delegated parent exists."""
    from jailpy.runtime import cgroups

    found = cgroups.hierarchies()
    chosen, missing = cgroups.choose_hierarchies(("memory", "pids", "cpu"), found)
    if missing:
        pytest.skip(f"kernel lacks cgroup controllers {missing}")
    user = os.environ.get("JAILPY_TEST_USER", "jailpy-test") if os.geteuid() == 0 else None
    dirs = {c: h.directory(f"/jailpy/{user}") for c, h in chosen.items()}
    if not all(os.path.isdir(d) for d in dirs.values()):
        pytest.skip("no delegated cgroup parent: scripts/setup.d/cgroup.sh was not run")
    return dirs


# --- rlimits -------------------------------------------------------------------


def test_rlimits_from_options_and_profile(jailpy, test_user, user_tmp):
    result = jailpy.sandbox("ulimit -Sn; ulimit -Hn; ulimit -c; ulimit -s",
                            "--rlimit", "nofile=64:128", "--rlimit", "core=0",
                            "--rlimit", "stack=4M")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["64", "128", "0", "4096"]
    profile = as_user_file(user_tmp / "p.toml", 'extends = ["default"]\n[limits.rlimits]\n'
                           'nofile = "32:48"\nfsize = "2M"\n', test_user)
    result = jailpy.sandbox("ulimit -Sn; ulimit -Hn; ulimit -f", "-p", str(profile))
    assert result.stdout.split() == ["32", "48", str(2 * 1024 * 1024 // 512)], result.stderr


def test_hard_limit_above_the_callers_is_refused(jailpy):
    result = jailpy.sandbox("true", "--rlimit", "nofile=64:99999999")
    assert result.returncode == 125
    assert result.stderr.startswith("jailpy: --rlimit nofile=64:99999999: cannot set "
                                    "RLIMIT_NOFILE"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, profile, expected", [
    (["--rlimit", "nofle=10"], None, "did you mean 'nofile'?"),
    (["--rlimit", "nofile=lots"], None, "--rlimit nofile=lots: bad nofile limit"),
    (["--rlimit", "nofile=20:10"], None, "soft limit above the hard limit"),
    (["--timeout", "soon"], None, "--timeout: bad duration 'soon'"),
    ([], '[limits]\ntimeout = "forever"\n', "p.toml: limits.timeout: bad duration"),
    ([], "[limits.rlimits]\nfsize = \"1X\"\n", "p.toml: limits.rlimits.fsize: bad size"),
    ([], "[limits]\nmemory_swap_max = \"1G\"\n", "memory_swap_max needs memory_max"),
])
def test_bad_limit_values_name_their_origin(jailpy, test_user, user_tmp, args, profile,
                                            expected):
    if profile is not None:
        args = ["-p", str(as_user_file(user_tmp / "p.toml", profile, test_user))]
    result = jailpy.run(["run", *args, "--", "true"])
    assert result.returncode == 125
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr


def test_nproc_stops_a_fork_bomb_without_touching_the_host_user(jailpy, user_tmp):
    """RLIMIT_NPROC counts per user namespace (Linux 5.14+): the bomb is held at the
    limit although the same user already runs more processes than that outside,
    and that user can still start processes on the host meanwhile."""
    limit = 24
    marker = _marker()
    outside = [subprocess.Popen(jailpy.user.command(["sleep", "20"])) for _ in range(limit + 6)]
    try:
        out = user_tmp / "peak"
        bomb = jailpy.popen(["run", "--bind", str(user_tmp), str(user_tmp),
                             "--rlimit", f"nproc={limit}", "--", "python3", "-c", BOMB,
                             str(out), "2", marker], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        poll(lambda: out.exists() and int(out.read_text()) >= limit - 4, 20)
        alive = jailpy.raw(["sh", "-c", "echo alive"], timeout=20)  # the host user, meanwhile
        _, err = bomb.communicate(timeout=30)
    finally:
        for proc in outside:
            proc.kill()
            proc.wait()
    assert alive.returncode == 0 and alive.stdout == "alive\n"
    assert bomb.returncode == 0, err
    peak = int(out.read_text())
    assert peak == limit - 1  # pid 1 + the command: the namespace helper is the Nth
    assert _leftovers(marker) == ""


def test_pids_cgroup_stops_a_fork_bomb(jailpy, user_tmp, cgroup_parent):
    limit = 32
    marker = _marker()
    out = user_tmp / "peak"
    proc = jailpy.popen(["run", "--bind", str(user_tmp), str(user_tmp), "--pids-max",
                         str(limit), "--json-status", str(user_tmp / "status.json"), "--",
                         "python3", "-c", BOMB, str(out), "1.5", marker],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # This run's own cgroup (the parent is shared by every sandbox of the test user).
    own = _own_cgroups(Path(cgroup_parent["pids"]), proc.pid)
    assert poll(own, 10), "no sandbox cgroup appeared"
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    peak = int(out.read_text())
    assert peak == limit - 1  # pid 1 + the command; the namespace helper is the Nth
    status = json.loads((user_tmp / "status.json").read_text())
    assert "pids" in status["limits_hit"] and status["ended_by"] is None
    assert status["cgroup"] in ("v1", "v2")
    assert _leftovers(marker) == ""
    assert own() == []


def _own_cgroups(parent: Path, popen_pid: int):
    """() -> the sandbox cgroups of the jailpy run started as popen_pid (jailpy names
    them jailpy-<its pid>-<n>; other runs of the test user share the parent)."""
    supervisor = poll(lambda: _supervisor_pid(popen_pid), 10)
    return lambda: sorted(parent.glob(f"jailpy-{supervisor}-*"))


# --- memory --------------------------------------------------------------------


def test_memory_hog_is_killed_by_the_memory_limit(jailpy, cgroup_parent):
    free = jailpy.run(["run", "--", "python3", "-c", HOG])  # counterpart: fine unlimited
    assert free.returncode == 0 and "allocated 512 MiB" in free.stdout, free.stderr
    result = jailpy.run(["run", "--memory-max", "64M", "--json-status", "-", "--",
                         "python3", "-c", HOG])
    assert result.returncode == 137
    status = _status(result)
    assert status["ended_by"] == "memory" and "memory" in status["limits_hit"]
    assert status["signal"] == 9 and status["signal_name"] == "SIGKILL"
    assert 48 << 20 <= status["peak_memory"] <= 64 << 20
    assert status["cgroup"] in ("v1", "v2")
    assert without_cwd_note(result.stderr) == ("jailpy: the command was ended by the memory limit (--memory-max, "
                             "limits.memory_max): the kernel's OOM killer; exit status 137\n")
    # A build tool whose child was OOM-killed fails on its own: still "memory".
    via_shell = jailpy.sandbox(f"python3 -c \"{HOG}\"; exit $?", "--memory-max", "64M",
                               "--json-status", "-")
    assert via_shell.returncode == 137 and _status(via_shell)["ended_by"] == "memory"
    # Files in a tmpfs are charged to the cgroup and to no process, so the OOM
    # killer chooses pid 1, jailpy's largest process: still the command's doing.
    filled = jailpy.sandbox("cat /dev/zero > /tmp/fill", "--memory-max", "64M",
                            "--json-status", "-")
    assert filled.returncode == 137, filled.stderr
    assert _status(filled)["ended_by"] == "memory", filled.stderr
    assert "set-up" not in filled.stderr


def test_cgroup_limit_that_cannot_be_applied_fails_closed(jailpy):
    env = {"JAILPY_CGROUP_PARENT": "/no/such/parent"}
    refused = _with_env(jailpy, env, ["run", "--memory-max", "64M", "--", "true"])
    assert refused.returncode == 125
    assert refused.stderr.startswith("jailpy: --memory-max: cannot apply the memory limit")
    assert "hint:" in refused.stderr
    best = _with_env(jailpy, env, ["run", "--memory-max", "64M", "--limits-best-effort",
                                   "--json-status", "-", "--", "true"])
    assert best.returncode == 0, best.stderr
    assert "warning: limit not applied (best-effort): memory" in best.stderr
    status = _status(best)
    assert status["limits_not_applied"] and status["cgroup"] is None


def test_cpu_quota_is_written_and_the_cgroup_removed(jailpy, cgroup_parent):
    parent = Path(cgroup_parent["cpu"])
    proc = jailpy.popen(["run", "--cpus", "0.25", "--", "sh", "-c",
                         "cat /proc/self/cgroup; sleep 2"], stdout=subprocess.PIPE, text=True)
    found = poll(_own_cgroups(parent, proc.pid), 10, 0.02)
    assert found, "no sandbox cgroup appeared"
    cg = found[0]
    if (cg / "cpu.max").exists():
        assert (cg / "cpu.max").read_text().split() == ["25000", "100000"]
    else:
        assert (cg / "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert (cg / "cpu.cfs_period_us").read_text().strip() == "100000"
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    # inside, the cgroup namespace is rooted at the sandbox's own cgroup
    assert any(line.split(":")[1] in ("cpu", "") and line.endswith(":/")
               for line in out.splitlines()), out
    assert not cg.exists()


# --- timeout -------------------------------------------------------------------


def test_timeout_kills_a_stubborn_loop_and_everything_it_started(jailpy):
    marker = _marker()
    script = (f"import os, signal, subprocess\n"
              f"signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              f"subprocess.Popen(['sleep', '300', '{marker}'], start_new_session=True)\n"
              f"while True: pass\n")
    result = jailpy.run(["run", "--timeout", "1s", "--kill-grace", "0.3s", "--json-status",
                         "-", "--", "python3", "-c", script, marker], timeout=30)
    assert result.returncode == 124
    status = _status(result)
    assert status["timed_out"] and status["ended_by"] == "timeout"
    assert status["exit_code"] == 124 and status["signal_name"] == "SIGKILL"
    assert status["limits_hit"] == ["timeout"]
    assert "ended by the wall-clock timeout (--timeout, limits.timeout)" in result.stderr
    assert status["user_time"] > 0  # the killed loop's CPU time is still accounted
    assert _leftovers(marker) == ""


def test_timeout_from_a_profile_sends_sigterm_first(jailpy, test_user, user_tmp):
    profile = as_user_file(user_tmp / "t.toml", 'extends = ["default"]\n[limits]\n'
                           'timeout = "300ms"\n', test_user)
    result = jailpy.run(["run", "-p", str(profile), "--json-status", "-", "--",
                         "sleep", "30"], timeout=30)
    assert result.returncode == 124
    status = _status(result)
    assert status["signal_name"] == "SIGTERM" and status["timed_out"]


def test_signals_are_still_forwarded_while_a_timeout_runs(jailpy):
    marker = _marker()
    proc = jailpy.popen(["run", "--timeout", "60s", "--json-status", "-", "--", "sh", "-c",
                         f"trap 'echo got-term; exit 7' TERM; echo ready; "
                         f"while :; do sleep 0.05; done; : {marker}"],
                        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    jailpy_pid = _supervisor_pid(proc.pid)
    os.kill(jailpy_pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 7
    assert "got-term" in out
    assert json.loads(out.strip().splitlines()[-1])["timed_out"] is False


# --- disk and cpu rlimits --------------------------------------------------------


def test_fsize_stops_a_disk_filler(jailpy, user_tmp):
    dd = ["dd", "if=/dev/zero", "bs=1M", "count=5"]
    bind = ["--bind", str(user_tmp), str(user_tmp), "--chdir", str(user_tmp)]
    free = jailpy.run(["run", *bind, "--", *dd, "of=free"])
    assert free.returncode == 0 and (user_tmp / "free").stat().st_size == 5 << 20
    result = jailpy.run(["run", *bind, "--rlimit", "fsize=1M", "--json-status", "-", "--",
                         *dd, "of=big"])
    assert result.returncode == 128 + signal.SIGXFSZ
    assert (user_tmp / "big").stat().st_size == 1 << 20
    status = _status(result)
    assert status["ended_by"] == "rlimit-fsize" and status["signal_name"] == "SIGXFSZ"


def test_cpu_rlimit_sends_sigxcpu_then_sigkill(jailpy):
    soft = jailpy.sandbox("while :; do :; done", "--rlimit", "cpu=1:2", "--json-status", "-",
                          timeout=30)
    assert soft.returncode == 128 + signal.SIGXCPU
    assert _status(soft)["ended_by"] == "rlimit-cpu"
    hard = jailpy.sandbox("trap '' XCPU; while :; do :; done", "--rlimit", "cpu=1:2",
                          "--json-status", "-", timeout=30)
    assert hard.returncode == 137
    status = _status(hard)
    assert status["signal_name"] == "SIGKILL" and status["ended_by"] == "rlimit-cpu"


# --- JSON status ------------------------------------------------------------------


def test_json_status_for_exit_signal_and_errors(jailpy, user_tmp):
    keys = {"version", "exit_code", "command_exit_code", "signal", "signal_name", "timed_out",
            "ended_by", "limits_hit", "wall_time", "user_time", "system_time", "peak_memory",
            "max_rss", "cgroup", "limits_not_applied", "egress", "error"}
    normal = jailpy.sandbox("exit 3", "--json-status", str(user_tmp / "s.json"))
    assert normal.returncode == 3
    doc = json.loads((user_tmp / "s.json").read_text())
    assert set(doc) == keys
    assert (doc["exit_code"], doc["command_exit_code"], doc["signal"], doc["ended_by"],
            doc["timed_out"], doc["error"]) == (3, 3, None, None, False, None)
    assert doc["wall_time"] > 0 and doc["max_rss"] > 0
    killed = jailpy.sandbox("kill -USR1 $$", "--json-status", "-")
    doc = _status(killed)
    assert killed.returncode == doc["exit_code"] == 128 + signal.SIGUSR1
    assert (doc["signal"], doc["signal_name"], doc["command_exit_code"]) == \
        (signal.SIGUSR1, "SIGUSR1", None)
    via_fd = jailpy.raw(["sh", "-c", f"{jailpy.binary} run --json-status-fd 3 -- "
                         "no-such-command 3>fd.json"])
    assert via_fd.returncode == 127
    doc = json.loads((user_tmp / "fd.json").read_text())
    assert doc["exit_code"] == 127 and "command not found" in doc["error"]
    bad = jailpy.run(["run", "--json-status", "-", "--rlimit", "bogus=1", "--", "true"])
    assert bad.returncode == 125 and _status(bad)["error"].startswith("--rlimit bogus=1")


def test_check_reports_the_cgroup_version_and_parent(jailpy, cgroup_parent):
    report = jailpy.run(["check"])
    rows = [line for line in report.stdout.splitlines() if " limits " in line]
    assert any(line.startswith("ok") and "cgroup controllers" in line for line in rows), rows
    assert any(line.startswith("ok") and "delegated cgroup parent" in line for line in rows)
    missing = _with_env(jailpy, {"JAILPY_CGROUP_PARENT": "/no/such"}, ["check"])
    lines = missing.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "delegated cgroup parent" in line)
    assert lines[at].startswith("MISSING") and "fix:" in lines[at + 1]
