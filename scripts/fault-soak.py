#!/usr/bin/env python3
"""Fault soak for release checks: the CI fault tests (tests/integration/test_faults.py)
repeated with random timing, many more times, and the SIGINT start-up window.

Run as root (jailpy runs as the test user), after scripts/setup.sh:

    JAILPY_VENV=/opt/jailpy/venv python3 scripts/fault-soak.py signals 400
    JAILPY_VENV=/opt/jailpy/venv python3 scripts/fault-soak.py sigkill 300
    JAILPY_VENV=/opt/jailpy/venv python3 scripts/fault-soak.py sigint-window 20

signals N   N runs of `jailpy run [--net slirp4netns] -- sleep`, each sent one of
            SIGTERM/SIGHUP/SIGINT/SIGQUIT at a random stage of set-up plus a random
            delay; every run must end with 128+N and leave no process behind.
sigkill N   N SIGKILLs of jailpy during slirp4netns, pasta and D-Bus proxy start-up,
            then one normal run each: no helper, directory or socket may be left.
sigint-window N
            SIGINT to `jailpy run -- true` N times at each delay 0..40 ms after
            exec: how often Python's start-up prints a traceback ("traceback"),
            jailpy exits 130 cleanly ("130"), the interpreter is killed by the
            signal before it has a handler ("killed", no output), or the run
            completes ("done"); the last line of each traceback is shown.

JAILPY_FAULT_SEED picks the random timing; the summary prints it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE / "tests"), str(HERE / "tests" / "integration")]

import conftest  # noqa: E402
import test_faults as faults  # noqa: E402


def runner() -> conftest.Runner:
    import pwd

    entry = pwd.getpwnam(conftest.TEST_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    user = conftest.TestUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    workdir = Path(tempfile.mkdtemp(prefix="jailpy-soak-"))
    os.chmod(workdir, 0o755)
    if os.geteuid() == 0:  # the test user's own (a dbus-daemon of its own binds a socket here)
        os.chown(workdir, user.uid, user.gid)
    return conftest.Runner(user, conftest._jailpy_binary(), workdir)


def soak_signals(count: int) -> None:
    jailpy, rng = runner(), random.Random(faults.SEED)
    for i in range(count):
        sig = rng.choice(faults.SIGNALS)
        stage = rng.choice(sorted(faults.STAGES))
        opts = ("--net", "slirp4netns") if rng.random() < 0.25 else ()
        faults.signal_at(jailpy, sig, stage, rng.uniform(0, 0.01), opts)
    print(f"signals: {count} runs, none lost, no survivor (JAILPY_FAULT_SEED={faults.SEED})")


def soak_sigkill(count: int) -> None:
    jailpy, rounds = runner(), max(1, count // 24)
    for _ in range(rounds):  # 8 kills per helper and round
        for helper in ("slirp4netns", "pasta"):
            faults.sigkill_network(jailpy, helper, 8)
        faults.sigkill_dbus(jailpy, jailpy.user, jailpy.workdir, 8)
    print(f"sigkill: {rounds * 24} SIGKILLs during start-up (slirp4netns, pasta, D-Bus proxy), "
          f"nothing left (JAILPY_FAULT_SEED={faults.SEED})")


def sigint_window(count: int) -> None:
    jailpy = runner()
    print("delay_ms traceback fatal killed 130 done other")
    seen: set[str] = set()
    for delay_ms in range(0, 41, 2):
        tally = {"traceback": 0, "fatal": 0, "killed": 0, "130": 0, "done": 0, "other": 0}
        for _ in range(count):
            proc = faults.start(jailpy, ["run", "--", "true"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
            end = time.monotonic() + delay_ms / 1000
            while time.monotonic() < end:
                pass
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            _, err = proc.communicate(timeout=30)
            text = err.decode(errors="replace")
            if "Fatal Python error" in text:
                tally["fatal"] += 1
                seen.add(next(line for line in text.splitlines() if "Fatal Python" in line))
            elif "Traceback" in text:
                tally["traceback"] += 1
                where = [line for line in text.splitlines() if line.startswith("  File")]
                seen.add(where[-1].strip() if where else text.strip().splitlines()[-1])
            elif proc.returncode == -signal.SIGINT:
                tally["killed"] += 1
            elif proc.returncode == 130:
                tally["130"] += 1
            elif proc.returncode == 0:
                tally["done"] += 1
            else:
                tally["other"] += 1
        print(delay_ms, *tally.values(), flush=True)
    for where in sorted(seen):
        print("seen:", where)


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    {"signals": soak_signals, "sigkill": soak_sigkill, "sigint-window": sigint_window}[mode](count)


if __name__ == "__main__":
    main()
