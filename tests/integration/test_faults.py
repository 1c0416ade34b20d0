"""Faults: signals at every stage of set-up, SIGKILL during helper start-up, closed stdio.

The timing is driven by what /proc shows of the run (the relay handler caught
in SigCgt, the namespace child, pid 1, the target, the command), polled in a
tight loop, plus seeded random delays after those points; a failure prints
the seed and the point. The longer soak for release checks is
scripts/fault-soak.py (docs/architecture.md, "Signals").
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from conftest import children, comm, poll, process_tree, processes

SEED = int(os.environ.get("JAILPY_FAULT_SEED", "2126"))
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def _caught(pid: int, sig: int) -> bool:
    """Whether pid has a handler for sig (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def _depth(top: int) -> int:
    """How many generations below jailpy exist (namespace child 1, pid 1 2, target 3)."""
    level, frontier = 0, [top]
    while True:
        frontier = [c for p in frontier for c in children(p)]
        if not frontier:
            return level
        level += 1


#: Points of the set-up, each a predicate on jailpy's pid. "relay": its relaying
#: handlers are installed (SIGTERM is caught only by them; SIGINT is caught by
#: Python from interpreter start-up).
STAGES = {
    "relay": lambda top: _caught(top, signal.SIGTERM),
    "namespace-child": lambda top: _depth(top) >= 1,
    "pid1": lambda top: _depth(top) >= 2,
    "target-forked": lambda top: _depth(top) >= 3,
    "command": lambda top: any(comm(p) == "sleep" for p in process_tree(top)),
}


def spin_until(predicate, timeout: float = 15.0) -> bool:
    """Poll without sleeping (the windows are a few ms wide); bounded by timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
    return False


def start(jailpy, args: list[str], env: dict[str, str] | None = None, **kwargs):
    """jailpy as the test user, started directly (no runuser in between), so the
    Popen pid is jailpy's own."""
    if os.geteuid() == 0:
        kwargs.update(user=jailpy.user.uid, group=jailpy.user.gid, extra_groups=[])
    proc = subprocess.Popen([jailpy.binary, *args], env=jailpy.env(env), cwd=jailpy.workdir,
                            **kwargs)
    jailpy.started.append(proc)
    return proc


def _signal_state(top: int) -> list[str]:
    """Each process of the run with its pending, blocked and caught signals."""
    rows = []
    for pid in process_tree(top):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        rows.append(f"{pid} {comm(pid)} " + " ".join(
            f"{k}={fields[k].strip()}" for k in ("State", "SigPnd", "ShdPnd", "SigBlk", "SigCgt")))
    return rows


def _left(marker: str, uid: int) -> list[str]:
    return [raw.replace(b"\0", b" ").decode(errors="replace") for _, raw in processes(uid)
            if marker.encode() in raw]


def signal_at(jailpy, sig: int, stage: str, delay: float, opts: tuple[str, ...] = ()) -> None:
    """Run `sleep` in a sandbox, send sig at the stage (+ delay), expect 128+sig and
    nothing of the run left."""
    marker = f"30.{os.getpid()}{random.randrange(10**6):06d}"
    proc = start(jailpy, ["run", *opts, "--", "sleep", marker], stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    where = f"signal {sig} at {stage}+{delay * 1000:.1f}ms {opts} (JAILPY_FAULT_SEED={SEED})"
    try:
        assert spin_until(lambda: STAGES[stage](proc.pid) or proc.poll() is not None), where
        if delay:
            end = time.monotonic() + delay
            while time.monotonic() < end:
                pass
        os.kill(proc.pid, sig)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"lost {where}: jailpy still running: "
                                 f"{_signal_state(proc.pid)}") from None
        stderr = proc.stderr.read().decode(errors="replace")
        assert code == 128 + sig, f"{where}: status {code}, {stderr}"
        assert "Traceback" not in stderr, where
        assert poll(lambda: not _left(marker, jailpy.user.uid), 5), \
            f"{where}: survivors {_left(marker, jailpy.user.uid)}"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_at_each_stage_of_set_up_ends_the_run(jailpy, sig, stage):
    signal_at(jailpy, sig, stage, 0.0)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_at_random_moments_of_set_up_ends_the_run(jailpy, sig):
    rng = random.Random(SEED + sig)
    for _ in range(4):
        signal_at(jailpy, sig, "relay", rng.uniform(0, 0.02))


@pytest.mark.parametrize("stage", ["relay", "namespace-child", "target-forked"])
def test_a_signal_while_the_network_helper_starts_ends_the_run(jailpy, stage):
    """With slirp4netns the host step (helper start-up) lies between the relay and
    pid 1: the signal is held and relayed once pid 1 exists."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal_at(jailpy, sig, stage, 0.0, ("--net", "slirp4netns"))


# --- SIGKILL during helper start-up --------------------------------------------------


def _kill_during_start_up(jailpy, args: list[str], helper: str, env: dict[str, str] | None,
                          kills: int) -> list[int]:
    """SIGKILL jailpy `kills` times while its helper starts; returns the killed pids."""
    rng = random.Random(SEED)
    killed = []
    for i in range(kills):
        proc = start(jailpy, args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 2:  # at a random moment after the relay: before, during or after the helper
            spin_until(lambda: STAGES["relay"](proc.pid) or proc.poll() is not None)
            end = time.monotonic() + rng.uniform(0, 0.05)
            while time.monotonic() < end:
                pass
        else:  # as soon as the helper has been forked
            spin_until(lambda: any(comm(p) == helper for p in children(proc.pid))
                       or proc.poll() is not None)
        proc.kill()
        proc.wait()
        killed.append(proc.pid)
    return killed


def _helpers_of(pids: list[int], helper: str) -> list[int]:
    """Helpers still running that a killed run started (their argv names its directory)."""
    marks = [f"-{pid}-".encode() for pid in pids]
    return [pid for pid, raw in processes() if raw.split(b"\0")[0].endswith(helper.encode())
            and any(m in raw for m in marks)]


def sigkill_network(jailpy, helper: str, kills: int) -> None:
    """`kills` SIGKILLs during the helper's start-up, then a normal run: nothing left."""
    began = time.time() - 1
    killed = _kill_during_start_up(jailpy, ["run", "--net", helper, "--", "true"], helper,
                                   None, kills)
    assert poll(lambda: not _helpers_of(killed, helper), 5), "a helper outlived jailpy"
    again = jailpy.run(["run", "--net", helper, "--", "true"])
    assert again.returncode == 0, again.stderr
    # Where a run's directory lives (no XDG_RUNTIME_DIR in the tests' environment), and
    # where jailpy made it before runtime/rundir.py.
    base = f"/tmp/jailpy-{jailpy.user.uid}"
    left = [f"{base}/{n}" for n in os.listdir(base) for p in killed if n.startswith(f"net-{p}-")]
    left += [f"/tmp/{n}" for n in os.listdir("/tmp") for p in killed
             if n.startswith(f"jailpy-net-{p}-") and _mtime(f"/tmp/{n}") >= began]
    assert left == [], f"left behind: {left} (JAILPY_FAULT_SEED={SEED})"


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def sigkill_dbus(jailpy, test_user, workdir, kills: int) -> None:
    """The same for the D-Bus proxy, against a dbus-daemon of our own."""
    from desktop_servers import SessionBus

    bus = SessionBus(test_user, workdir)
    try:
        runtime = workdir / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(runtime, test_user.uid, test_user.gid)
        env = {"DBUS_SESSION_BUS_ADDRESS": bus.address, "XDG_RUNTIME_DIR": str(runtime)}
        killed = _kill_during_start_up(jailpy, ["run", "--dbus", "--", "true"],
                                       "xdg-dbus-proxy", env, kills)
        assert poll(lambda: not _helpers_of(killed, "xdg-dbus-proxy"), 5), \
            "a proxy outlived jailpy"
        again = jailpy.run(["run", "--dbus", "--", "true"], env=env)
        assert again.returncode == 0, again.stderr
        assert os.listdir(runtime / "jailpy") == [], f"JAILPY_FAULT_SEED={SEED}"
    finally:
        bus.stop()


@pytest.mark.parametrize("helper", ["slirp4netns", "pasta"])
def test_sigkill_during_network_start_up_leaves_nothing_after_the_next_run(jailpy, helper):
    from shutil import which

    if which(helper) is None:
        pytest.skip(f"{helper} is not installed (scripts/setup.sh installs it)")
    sigkill_network(jailpy, helper, 8)


def test_sigkill_during_dbus_proxy_start_up_leaves_nothing_after_the_next_run(jailpy,
                                                                               user_tmp,
                                                                               test_user):
    sigkill_dbus(jailpy, test_user, user_tmp, 8)


# --- closed stdio ---------------------------------------------------------------------

CLOSED = [(0,), (1,), (2,), (0, 1), (1, 2), (0, 2), (0, 1, 2)]


def run_closed(jailpy, args: list[str], closed: tuple[int, ...]) -> tuple[int, str, str]:
    """jailpy ARGS with the given standard fds closed; the others captured."""
    pipes = {fd: subprocess.PIPE for fd in (1, 2) if fd not in closed}
    proc = start(jailpy, args, stdin=subprocess.DEVNULL, stdout=pipes.get(1),
                 stderr=pipes.get(2), preexec_fn=lambda: [os.close(fd) for fd in closed])
    out, err = proc.communicate(timeout=30)
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


@pytest.mark.parametrize("closed", CLOSED, ids=lambda c: "closed-" + "".join(map(str, c)))
def test_closed_stdio_keeps_the_commands_status(jailpy, closed):
    # echo fails on a closed stdout: 0 says the command got /dev/null there.
    code, out, err = run_closed(jailpy, ["run", "--", "sh", "-c", "echo x; echo y >&2; exit 3"],
                                closed)
    assert code == 3, err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("closed", [(1,), (2,), (0, 1, 2)],
                         ids=lambda c: "closed-" + "".join(map(str, c)))
def test_closed_stdio_errors_are_125_without_a_traceback(jailpy, closed):
    for args in (["run", "--no-such-option", "--", "true"],
                 ["run", "--profile", "/nonexistent.toml", "--", "true"],
                 ["run", "--", "/nonexistent-command"]):
        code, out, err = run_closed(jailpy, args, closed)
        assert code == (127 if args[-1].startswith("/nonexistent-c") else 125), (args, err)
        assert "Traceback" not in err and "internal error" not in err, (args, err)
    code, out, err = run_closed(jailpy, ["run", "--explain", "--", "true"], closed)
    assert code == 0, err
    assert "Traceback" not in err and "internal error" not in err


def test_explain_of_an_argument_that_is_not_utf8_under_a_strict_encoding(jailpy):
    proc = start(jailpy, ["run", "--explain", "--", "true", "\udcff"],
                 {"PYTHONIOENCODING": "utf-8:strict"}, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"internal error" not in err and b"Traceback" not in err
