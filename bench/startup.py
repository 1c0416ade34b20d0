#!/usr/bin/env python3
"""Start-up latency of `jailpy run -- true` next to bwrap and firejail.

All tools run in the same process loop, round-robin, as an unprivileged user
(the test user when this runs as root), so machine noise hits them equally.
Prints medians and ratios, and the in-process API cost per sandbox
(`Sandbox.run(["true"])` in a loop), which is what a program that starts many
sandboxes pays.

    python3 bench/startup.py [--runs 40] [--baseline VENV]

--baseline VENV adds "jailpy@base", the jailpy installed in another venv
(e.g. one built from an earlier commit), to the same round-robin loop: the
honest way to tell whether a change made start-up faster or slower.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap

from _common import JAILPY, median_times, python_as_user, user_env


def commands(baseline: str | None = None) -> dict[str, list[str]]:
    home = user_env()["HOME"]
    tools = {
        # jailpy's default profile: /usr and /etc read-only, fresh /proc and /dev,
        # tmpfs /tmp /run /var/tmp and home, every namespace, new session, no network.
        "jailpy": [JAILPY, "run", "--", "true"],
        # bwrap doing the same work as the default profile.
        "bwrap": ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                  "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                  "--symlink", "usr/sbin", "/sbin", "--symlink", "usr/lib", "/lib",
                  "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc",
                  "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
                  "--tmpfs", "/var/tmp", "--tmpfs", home, "--hostname", "jailpy",
                  "--clearenv", "--", "/usr/bin/true"],
        "firejail": ["firejail", "--noprofile", "--quiet", "true"],
    }
    if baseline:
        tools["jailpy@base"] = [f"{baseline}/bin/jailpy", "run", "--", "true"]
    return {name: argv for name, argv in tools.items() if shutil.which(argv[0])}


def api_per_sandbox(runs: int) -> float:
    script = textwrap.dedent(f"""
        import statistics, time
        from jailpy import Sandbox, load_policy
        box = Sandbox(load_policy("default"))
        box.run(["true"])
        times = []
        for _ in range({runs}):
            start = time.perf_counter()
            box.run(["true"])
            times.append(time.perf_counter() - start)
        print(statistics.median(times))
    """)
    return python_as_user(script, env=user_env())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--baseline", metavar="VENV",
                        help="also time the jailpy installed in this venv, in the same loop")
    args = parser.parse_args()
    tools = commands(args.baseline)
    medians = {name: seconds * 1000
               for name, seconds in median_times(tools, args.runs, user_env()).items()}
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cpus, kernel {os.uname().release}")
    print(f"runs per tool: {args.runs} (round-robin), median wall time in ms")
    for name, ms in medians.items():
        print(f"  {name:<9} {ms:7.2f} ms")
    jail = medians["jailpy"]
    for other in ("jailpy@base", "bwrap", "firejail"):
        if other in medians:
            print(f"  jailpy / {other:<11} {jail / medians[other]:5.2f}x")
    api = api_per_sandbox(args.runs) * 1000
    print(f"  API Sandbox.run(['true']) per sandbox: {api:.2f} ms")
    if "bwrap" in medians:
        print(f"  API / bwrap CLI         {api / medians['bwrap']:5.2f}x")


if __name__ == "__main__":
    sys.exit(main())
