#!/usr/bin/env python3
"""What a sandbox started inside another costs: jailpy and bwrap, each inside
jailpy --allow-nesting and inside bwrap, next to the outer sandboxes alone.

Round-robin, as an unprivileged user (the test user when run as root), medians.

    python3 bench/nesting.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import JAILPY, median_times, user_env

BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
JAILPY_NESTING = [JAILPY, "run", "--allow-nesting", "--"]


def commands() -> dict[str, list[str]]:
    inner_jailpy = [JAILPY, "run", "--", "true"]
    inner_bwrap = [*BWRAP, "true"]
    return {
        "jailpy": inner_jailpy,
        "jailpy --allow-nesting": [*JAILPY_NESTING, "true"],
        "bwrap": inner_bwrap,
        "jailpy in jailpy": [*JAILPY_NESTING, *inner_jailpy],
        "bwrap in jailpy": [*JAILPY_NESTING, *inner_bwrap],
        "jailpy in bwrap": [*BWRAP, *inner_jailpy],
        "bwrap in bwrap": [*BWRAP, *inner_bwrap],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    medians = median_times(commands(), args.runs, user_env())
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cpus, kernel {os.uname().release}")
    print(f"runs per command: {args.runs} (round-robin), median wall time in ms")
    for name, seconds in medians.items():
        print(f"  {name:<24} {seconds * 1000:7.2f} ms")
    for outer in ("jailpy", "bwrap"):
        inside = medians[f"{outer} in jailpy"] - medians["jailpy --allow-nesting"]
        print(f"  {outer} inside jailpy costs {inside * 1000:.2f} ms over the outer sandbox "
              f"({inside / medians[outer]:.2f}x {outer} alone)")


if __name__ == "__main__":
    sys.exit(main())
