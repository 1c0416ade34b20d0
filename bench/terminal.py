#!/usr/bin/env python3
"""Throughput of jailpy's terminal relay: `cat` of a 100 MB file at a terminal.

Every command runs with a fresh pseudo-terminal as its stdin, stdout and
stderr (this script reads the master as fast as it can, as a terminal
emulator would), as the unprivileged test user, round-robin:

    plain          cat FILE, no sandbox: what the terminal itself costs
    jailpy         jailpy run (a pty of its own, relayed by jailpy)
    jailpy-no-tty  jailpy run --no-tty (the command writes to the caller's
                   terminal directly): the same sandbox without the relay
    bwrap          bwrap --new-session (no pty of its own: writes directly)
    firejail       firejail (no pty of its own: writes directly)

bwrap and firejail do not relay, so they measure "a sandbox at a terminal"
and jailpy-no-tty is the like-for-like figure; the jailpy/plain ratio is the
relay's whole cost, the figure the issue asks for.

    python3 bench/terminal.py [--size-mb 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import pty
import shutil
import statistics
import time

from _common import JAILPY, as_user, user_env

DATA_DIR = "/tmp/jailpy-bench-tty"


def make_file(size_mb: int) -> str:
    """Text lines (what a terminal shows), readable by the test user."""
    os.makedirs(DATA_DIR, exist_ok=True)
    os.chmod(DATA_DIR, 0o755)
    path = f"{DATA_DIR}/data-{size_mb}mb.txt"
    if not os.path.exists(path) or os.path.getsize(path) != size_mb * 1024 * 1024:
        line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"0123456789abcdefghijklmnopqrstu\n"
        block = line * (1024 * 1024 // len(line)) + line[:1024 * 1024 % len(line)]
        with open(path, "wb") as f:
            for _ in range(size_mb):
                f.write(block)
        os.chmod(path, 0o644)
    return path


def commands(path: str) -> dict[str, list[str]]:
    tools = {
        "plain": ["cat", path],
        "jailpy": [JAILPY, "run", "--ro-bind", DATA_DIR, DATA_DIR, "--chdir", "/", "--",
                   "cat", path],
        "jailpy-no-tty": [JAILPY, "run", "--no-tty", "--ro-bind", DATA_DIR, DATA_DIR,
                          "--chdir", "/", "--", "cat", path],
        "bwrap": ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                  "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                  "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                  "--proc", "/proc", "--dev", "/dev", "--ro-bind", DATA_DIR, DATA_DIR,
                  "cat", path],
        "firejail": ["firejail", "--quiet", "--noprofile", "--net=none", "cat", path],
    }
    return {name: argv for name, argv in tools.items()
            if shutil.which(argv[0]) or os.path.exists(argv[0])}


def at_terminal(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run argv on a new pty; (wall seconds, bytes the terminal received)."""
    start = time.perf_counter()
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.chdir("/")
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    received = 0
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: no slave left
            break
        if not chunk:
            break
        received += len(chunk)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    os.close(master)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed with status {os.waitstatus_to_exitcode(status)}")
    return elapsed, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = make_file(args.size_mb)
    env = user_env()
    tools = commands(path)
    samples: dict[str, list[float]] = {name: [] for name in tools}
    sizes: dict[str, int] = {}
    for run in range(args.runs + 1):  # the first round warms the page cache and caches
        for name, argv in tools.items():
            elapsed, received = at_terminal(as_user(argv), env)
            if run:
                samples[name].append(elapsed)
            sizes[name] = received
    plain = statistics.median(samples["plain"])
    print(f"cat of {args.size_mb} MiB at a terminal, median of {args.runs} runs")
    print(f"{'':16}{'seconds':>9}{'MiB/s':>9}{'x plain':>9}   bytes on the terminal")
    for name, values in samples.items():
        seconds = statistics.median(values)
        print(f"{name:16}{seconds:9.2f}{args.size_mb / seconds:9.0f}{seconds / plain:9.2f}"
              f"   {sizes[name]}")


if __name__ == "__main__":
    main()
