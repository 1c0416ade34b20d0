#!/usr/bin/env python3
"""Start-up of `jailpy-bwrap` next to the real bwrap, on the same command lines.

Each command line runs through both, round-robin, as the unprivileged user;
prints median wall times and the ratio (docs/bwrap.md keeps the figures).

    python3 bench/bwrap.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from _common import JAILPY, median_times, user_env

USR = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
       "/lib", "--symlink", "usr/lib64", "/lib64"]
#: name -> bwrap arguments before the command (`true`).
LINES = {
    "minimal": USR,
    "unshare-all": [*USR, "--proc", "/proc", "--dev", "/dev", "--unshare-all",
                    "--die-with-parent", "--new-session"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    front_end = os.path.join(os.path.dirname(JAILPY), "jailpy-bwrap")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        sys.exit("bench/bwrap.py: bwrap is not installed")
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cpus; runs: {args.runs}; "
          "median wall time in ms")
    for name, line in LINES.items():
        tools = {"bwrap": [bwrap, *line, "true"], "jailpy-bwrap": [front_end, *line, "true"]}
        medians = median_times(tools, args.runs, user_env())
        real, ours = medians["bwrap"] * 1000, medians["jailpy-bwrap"] * 1000
        print(f"  {name:<12} bwrap {real:6.2f}  jailpy-bwrap {ours:6.2f}  ratio {ours / real:5.2f}x")


if __name__ == "__main__":
    sys.exit(main())
