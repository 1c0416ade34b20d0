#!/usr/bin/env python3
"""Load soak for the timing-sensitive integration tests (not run in CI).

CI runs the suite once, on a 2-core machine that the suite itself keeps busy; a
test that waits for the wrong thing (a fixed pause, a key sent before a window
takes input, a process looked for before it exists) passes there most of the
time and fails now and then. This repeats chosen tests under CPU pressure so
such a race shows up here first, and says which test failed, how often, and
under which pressure.

Run as root after scripts/setup.sh (jailpy runs as the test user):

    JAILPY_VENV=/opt/jailpy/venv python3 scripts/load-soak.py 8
    JAILPY_VENV=/opt/jailpy/venv python3 scripts/load-soak.py 20 tests/integration/test_terminal.py
    python3 scripts/load-soak.py --lock /tmp/jailpy-suite.lock 6 tests/integration/test_desktop_apps.py

Rounds cycle through the pressures: none; "busy", two `nice -n 5` busy loops;
"unit", the unit tests run over and over beside the soak. --lock holds an
flock on the file during each round (and releases it in between), for a
machine whose desktop tests share the test user's home with other suites.
Each round's JUnit XML and output stay in the directory printed at the start.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("JAILPY_VENV", "/opt/jailpy/venv"))
DEFAULT_TESTS = [f"tests/integration/{name}" for name in (
    "test_desktop_apps.py", "test_desktop_dbus.py", "test_desktop_x11.py", "test_pool.py",
    "test_serve.py", "test_terminal.py", "test_session.py", "test_network.py",
    "test_egress.py", "test_limits.py", "test_faults.py", "test_core.py")]
PRESSURES = ("none", "busy", "unit")


def pressure(kind: str) -> list[subprocess.Popen]:
    """Start the processes that load the machine during one round."""
    if kind == "busy":
        return [subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", "while 1: pass"],
                                 start_new_session=True) for _ in range(2)]
    if kind == "unit":
        loop = f"while :; do {VENV}/bin/python -m pytest -p no:cacheprovider -q -x tests/unit; done"
        return [subprocess.Popen(["nice", "-n", "5", "sh", "-c", loop], cwd=HERE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)]
    return []


def release(started: list[subprocess.Popen]) -> None:
    for proc in started:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def failures(junit: Path) -> list[str]:
    """Test ids that failed or errored in one round (all of them if pytest wrote nothing)."""
    try:
        tree = ElementTree.parse(junit)
    except (OSError, ElementTree.ParseError):
        return ["(no report: pytest did not finish)"]
    return [f"{case.get('classname')}::{case.get('name')}" for case in tree.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    parser.add_argument("--lock", help="flock this file during each round")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="jailpy-load-soak-"))
    print(f"load-soak: {args.rounds} rounds of {len(args.tests)} files; reports in {out}")
    failed: dict[str, list[str]] = defaultdict(list)
    for number in range(args.rounds):
        kind = PRESSURES[number % len(PRESSURES)]
        lock = open(args.lock, "a") if args.lock else None
        if lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        started = pressure(kind)
        try:
            junit = out / f"round{number}-{kind}.xml"
            with open(out / f"round{number}-{kind}.log", "wb") as log:
                subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", "-p",
                                "no:cacheprovider", "-q", "-rfE", f"--junitxml={junit}",
                                *args.tests], cwd=HERE, stdout=log, stderr=log)
        finally:
            release(started)
            if lock:
                lock.close()
        seen = failures(junit)
        for test in seen:
            failed[test].append(f"round {number} ({kind})")
        print(f"round {number} ({kind}): {len(seen)} failed", flush=True)
    for test, where in sorted(failed.items()):
        print(f"FLAKY {test}: {len(where)}/{args.rounds}: {', '.join(where)}")
    print(f"load-soak: {args.rounds} rounds, {sum(map(len, failed.values()))} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
