#!/usr/bin/env python3
"""What `jailpy run --changes` costs: the overlay, the recorded lower state, the
run directory, next to a plain run, a --tmp-overlay run and bwrap.

A project of --files small files (in a scratch dir owned by the test user) is
the current directory; every tool runs `true` there, round-robin. The
--changes runs leave one run directory each, removed at the end. Also timed:
`jailpy changes commit` of one modified file in that project.

    python3 bench/overlays.py [--runs 20] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

from _common import JAILPY, USER, as_user, median_times, user_env


def _project(files: int) -> str:
    root = tempfile.mkdtemp(prefix="jailpy-bench-", dir="/var/tmp")
    for i in range(files):
        sub = os.path.join(root, f"d{i // 100}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i}.txt"), "w") as f:
            f.write(f"{i}\n")
    if os.geteuid() == 0:
        entry = pwd.getpwnam(USER)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, entry.pw_uid, entry.pw_gid)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    project = _project(args.files)
    state = tempfile.mkdtemp(prefix="jailpy-bench-state-", dir="/var/tmp")
    os.chmod(state, 0o777)
    env = {**user_env(), "XDG_STATE_HOME": f"{state}/user"}
    tools = {
        "jailpy": [JAILPY, "run", "--", "true"],
        "--tmp-overlay": [JAILPY, "run", "--tmp-overlay", project, project, "--", "true"],
        "--changes": [JAILPY, "run", "--changes", "--", "true"],
        "bwrap": ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc",
                  "--dev", "/dev", "--", "/usr/bin/true"],
    }
    tools = {name: argv for name, argv in tools.items() if shutil.which(argv[0])}
    try:
        medians = {name: s * 1000 for name, s in
                   median_times(tools, args.runs, env, cwd=project).items()}
        run = [JAILPY, "run", "--changes", "--", "sh", "-c", "echo x >> d0/f0.txt"]
        subprocess.run(as_user(run), env=env, cwd=project, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(as_user([JAILPY, "changes", "commit", "latest"]), env=env, cwd=project,
                       check=True, capture_output=True)
        commit = (time.perf_counter() - start) * 1000
    finally:
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print(f"project: {args.files} files; runs per tool: {args.runs} (round-robin), median ms")
    for name, ms in medians.items():
        print(f"  {name:<14} {ms:7.2f} ms")
    for name in ("--tmp-overlay", "--changes"):
        print(f"  {name} / jailpy  {medians[name] / medians['jailpy']:5.2f}x")
        if "bwrap" in medians:
            print(f"  {name} / bwrap   {medians[name] / medians['bwrap']:5.2f}x")
    print(f"  jailpy changes commit (one file): {commit:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
