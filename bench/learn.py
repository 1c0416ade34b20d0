#!/usr/bin/env python3
"""What watching a program costs: `jailpy learn` on a C build, next to firejail --build.

A generated C project (FILES source files, one make target) is rebuilt from
clean in every sample, as the unprivileged test user, round-robin:

    make                      the build alone, no sandbox
    strace make               the build under strace with learn's options, no sandbox
    jailpy run -p LEARNED     the build in the profile learn wrote
    jailpy learn              learn's whole run: traced build + profile + verifying build
    firejail --build          firejail's profile builder on the same build

Prints medians and ratios to the plain build. docs/learn.md has the figures.

    python3 bench/learn.py [--runs 10] [--files 30]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import tempfile

from _common import JAILPY, USER, as_user, median_times, user_env

STRACE = ["strace", "-f", "-q", "-xx", "-y", "-s", "128", "-o", "/dev/null"]


def project(files: int) -> str:
    """The C project, in the user's home: firejail --build hides /tmp and /var/tmp."""
    home = user_env()["HOME"]
    root = tempfile.mkdtemp(prefix="jailpy-bench-learn-", dir=home)
    objects = []
    for i in range(files):
        with open(os.path.join(root, f"m{i}.c"), "w") as f:
            f.write(f"#include <stdio.h>\nint f{i}(int x) {{ return x * {i} + 1; }}\n")
        objects.append(f"m{i}.o")
    with open(os.path.join(root, "main.c"), "w") as f:
        f.write("int main(void) { return 0; }\n")
    with open(os.path.join(root, "Makefile"), "w") as f:
        f.write(f"prog: main.o {' '.join(objects)}\n\tgcc -o $@ $^\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam(USER)
        for path in [root, *(os.path.join(root, name) for name in os.listdir(root))]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--files", type=int, default=30)
    args = parser.parse_args()
    root = project(args.files)
    learned = os.path.join(root, "learned.toml")
    clean = "rm -f *.o prog; "
    env = user_env()
    try:
        subprocess.run(as_user([JAILPY, "learn", "-o", learned, "--", "make", "-s"]), env=env,
                       cwd=root, check=True, capture_output=True)
        commands = {
            "make": ["sh", "-c", clean + "make -s"],
            "strace make": ["sh", "-c", clean + " ".join(STRACE) + " make -s"],
            "jailpy run -p LEARNED": ["sh", "-c", clean + f"{JAILPY} run -p {learned} -- make -s"],
            "jailpy learn": ["sh", "-c", clean + f"{JAILPY} learn -o {learned}.new -- make -s"],
        }
        if shutil.which("firejail"):
            commands["firejail --build"] = [
                "sh", "-c", clean + f"rm -f fj.profile; firejail --build={root}/fj.profile make -s"]
        times = median_times(commands, args.runs, env, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = times["make"]
    print(f"C build of {args.files + 1} files, median of {args.runs} runs:")
    for name, seconds in times.items():
        print(f"  {name:<24} {seconds * 1000:8.0f} ms   x{seconds / base:5.2f}")


if __name__ == "__main__":
    main()
