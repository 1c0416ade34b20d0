"""What the benchmarks share: running commands as the unprivileged test user.

The benchmarks measure what an ordinary user pays, so when started as root
they drop to the test user (the one scripts/setup.sh makes) with a small,
fixed environment: the same for every tool they compare.
"""

from __future__ import annotations

import os
import pwd
import statistics
import subprocess
import time

VENV = os.environ.get("JAILPY_VENV", "/opt/jailpy/venv")
USER = os.environ.get("JAILPY_TEST_USER", "jailpy-test")
JAILPY = f"{VENV}/bin/jailpy"


def as_user(argv: list[str]) -> list[str]:
    """argv, prefixed to run as the test user when this process is root."""
    if os.geteuid() != 0:
        return argv
    entry = pwd.getpwnam(USER)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            *argv]


def user_env(path: str = "/usr/bin:/bin") -> dict[str, str]:
    """The user's environment, reduced to what every compared tool needs."""
    home = pwd.getpwnam(USER).pw_dir if os.geteuid() == 0 else os.environ["HOME"]
    return {"PATH": path, "HOME": home, "LANG": "C.UTF-8"}


def median_times(commands: dict[str, list[str]], runs: int,
                 env: dict[str, str], cwd: str = "/") -> dict[str, float]:
    """Median wall seconds of each command, run as the user after one warm-up.

    Round-robin rather than one command after another, so that machine noise
    hits every command alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        subprocess.run(as_user(argv), env=env, cwd=cwd, check=True, capture_output=True)
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(as_user(argv), env=env, cwd=cwd, check=True, capture_output=True)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def python_as_user(script: str, *args: str, env: dict[str, str]) -> float:
    """Run `script` in the venv's Python as the user; it prints one number."""
    out = subprocess.run(as_user([f"{VENV}/bin/python", "-c", script, *args]), env=env,
                         cwd="/", check=True, capture_output=True, text=True)
    return float(out.stdout.strip())
