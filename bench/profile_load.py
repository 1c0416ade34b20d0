"""What profile loading costs `jailpy run`, with and without the parse cache.

    python bench/profile_load.py [--runs N] [--jailpy PATH] [--profile NAME]

Run it as the user who runs jailpy (not root: root's cache would be tested).
Each sample is a fresh interpreter, as for a real `jailpy run`; runs of the
variants are interleaved so that machine load hits them alike, and medians
are printed:

1. in-process: importing the profile machinery and resolving the profile
   (what the parse cache and lazy imports are for), measured with
   perf_counter inside the fresh interpreter after the modules `jailpy run`
   needs anyway (click, the planner, the runtime) are imported;
2. whole command: `jailpy run -- true` wall time, cache on and off, with
   firejail and bwrap in the same run for the ratio.

Not a test: timings depend on the machine. Results go to docs/benchmarks.md
by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

_INPROCESS = r"""
import os, sys, time
import click, jailpy.plan, jailpy.runtime.launcher  # needed by `jailpy run` anyway
t0 = time.perf_counter()
from jailpy.api import load_policy
load_policy(sys.argv[1], use_cache=True)
print((time.perf_counter() - t0) * 1e3)
"""


def _python_of(jailpy: str) -> str:
    with open(jailpy) as f:
        first = f.readline()
    return first[2:].strip() if first.startswith("#!") else sys.executable


def _sample(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--jailpy", default=shutil.which("jailpy") or "jailpy")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    python = _python_of(args.jailpy)
    on = dict(os.environ)
    off = dict(os.environ, JAILPY_NO_CACHE="1")
    subprocess.run([args.jailpy, "run", "-p", args.profile, "--", "true"], env=on, check=True)
    time.sleep(2.1)  # files changed in the last 2 s are not cached: let the first run settle
    subprocess.run([args.jailpy, "run", "-p", args.profile, "--", "true"], env=on, check=True)

    inproc: dict[str, list[float]] = {"cache": [], "no cache": []}
    for _ in range(args.runs):
        for label, env in (("cache", on), ("no cache", off)):
            out = subprocess.run([python, "-c", _INPROCESS, args.profile], env=env,
                                 capture_output=True, text=True, check=True).stdout
            inproc[label].append(float(out))
    print(f"import profile machinery + resolve '{args.profile}' (median of {args.runs}):")
    for label, values in inproc.items():
        print(f"  {label:<9} {statistics.median(values):6.2f} ms (min {min(values):.2f})")

    commands = {
        "jailpy (cache)": ([args.jailpy, "run", "-p", args.profile, "--", "true"], on),
        "jailpy (no cache)": ([args.jailpy, "run", "-p", args.profile, "--", "true"], off),
    }
    if shutil.which("firejail"):
        commands["firejail --noprofile"] = (["firejail", "--quiet", "--noprofile", "true"], on)
    if shutil.which("bwrap"):
        commands["bwrap"] = (["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr",
                              "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/lib", "/lib",
                              "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
                              "true"], on)
    walls: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(args.runs):
        for label, (argv, env) in commands.items():
            walls[label].append(_sample(argv, env))
    base = statistics.median(walls["jailpy (cache)"])
    print(f"whole command, wall time (median of {args.runs}, interleaved):")
    for label, values in walls.items():
        median = statistics.median(values)
        print(f"  {label:<22} {median:7.1f} ms  (jailpy/this = {base / median:.2f})")


if __name__ == "__main__":
    main()
