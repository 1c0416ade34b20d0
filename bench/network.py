#!/usr/bin/env python3
"""Network throughput and helper start-up of jailpy's network modes.

- TCP throughput (iperf3) between a sandbox and a server on the host's
  127.0.0.1, both directions, for --net host, slirp4netns and pasta (both with
  --host-loopback, so the sandbox reaches the host's loopback at 10.0.2.2),
  next to plain host loopback and to each helper alone (same flags, attached
  to a bare `unshare -Urn` namespace), measured in the same run; ratios to
  host loopback.
- Helper start-up: spawn to ready of slirp4netns and pasta through jailpy's
  own driver, attached to a fresh `unshare -Urn` namespace each time; and the
  whole `jailpy run --net MODE -- true` against `--net none`.

Runs as an unprivileged user (the test user when started as root). All
traffic stays on this machine's loopback: the helpers map 10.0.2.2 to it.
bwrap has no user-mode networking and firejail's needs root, so the peer here
is the host's own loopback.

    python3 bench/network.py [--seconds 3] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap

from _common import JAILPY, VENV, as_user, median_times, python_as_user
from _common import user_env as _user_env

HELPERS = [h for h in ("slirp4netns", "pasta") if shutil.which(h)]


def user_env() -> dict[str, str]:
    """The user's environment, with sbin too: where some distributions put the helpers."""
    return _user_env("/usr/bin:/bin:/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- throughput -----------------------------------------------------------------------


def iperf(client: list[str], address: str, seconds: float, reverse: bool) -> float:
    """Gbit/s of one iperf3 run: `client` is the prefix that runs the iperf3 client."""
    port = free_port()
    server = subprocess.Popen(as_user(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port),
                                       "--forceflush"]),
                              env=user_env(), cwd="/", stdout=subprocess.PIPE, text=True)
    try:
        while "listening" not in (server.stdout.readline() or "listening"):
            pass
        argv = [*client, "iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]
        if reverse:
            argv.append("-R")
        out = subprocess.run(as_user(argv), env=user_env(), cwd="/", capture_output=True,
                             text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise RuntimeError(f"iperf3 client failed: {out.stderr.strip() or out.stdout[-300:]}")
        return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.kill()
        server.wait()


#: The helper alone, with jailpy's flags, attached to a bare `unshare -Urn`
#: namespace; runs the rest of argv in it. Separates the helper's own speed
#: from anything jailpy adds.
HELPER_ALONE = textwrap.dedent("""
    import subprocess, sys
    from jailpy.policy import Network
    from jailpy.runtime import network
    helper, argv = sys.argv[1], sys.argv[2:]
    kind = network.HELPERS[helper]
    target = subprocess.Popen(["unshare", "-Urn", "sh", "-c", "echo; exec sleep 600"],
                              stdout=subprocess.PIPE)
    target.stdout.readline()
    driver = kind(network.require_helper(helper), Network(mode=helper, host_loopback=True))
    driver.start(target.pid)
    try:
        code = subprocess.run(["nsenter", "-t", str(target.pid), "-U", "-n",
                               "--preserve-credentials", *argv]).returncode
    finally:
        driver.stop()
        target.kill()
        target.wait()
    sys.exit(code)
""")


def throughput(seconds: float, reps: int) -> dict[str, dict[str, float]]:
    modes = {"host loopback": ([], "127.0.0.1"),
             "jailpy --net host": ([JAILPY, "run", "--net", "host", "--"], "127.0.0.1")}
    for helper in HELPERS:
        modes[f"{helper} alone"] = (
            [f"{VENV}/bin/python", "-c", HELPER_ALONE, helper], "10.0.2.2")
        modes[f"jailpy --net {helper}"] = (
            [JAILPY, "run", "--net", helper, "--host-loopback", "--"], "10.0.2.2")
    results: dict[str, dict[str, list[float]]] = {m: {"out": [], "in": []} for m in modes}
    for _ in range(reps):  # round-robin: machine noise hits every mode alike
        for mode, (client, address) in modes.items():
            results[mode]["out"].append(iperf(client, address, seconds, reverse=False))
            results[mode]["in"].append(iperf(client, address, seconds, reverse=True))
    return {m: {d: statistics.median(v) for d, v in r.items()} for m, r in results.items()}


# --- start-up -------------------------------------------------------------------------


HELPER_READY = textwrap.dedent("""
    import os, statistics, subprocess, sys, time
    from jailpy.policy import Network
    from jailpy.runtime import network
    helper, runs = sys.argv[1], int(sys.argv[2])
    binary = network.require_helper(helper)
    kind = network.HELPERS[helper]
    times = []
    for _ in range(runs):
        # A fresh user+network namespace (id 0 mapped, as jailpy's own has).
        target = subprocess.Popen(["unshare", "-Urn", "sh", "-c", "echo; exec sleep 60"],
                                  stdout=subprocess.PIPE)
        target.stdout.readline()
        driver = kind(binary, Network(mode=helper))
        start = time.perf_counter()
        driver.start(target.pid)
        times.append(time.perf_counter() - start)
        driver.stop()
        target.kill()
        target.wait()
    print(statistics.median(times))
""")


def helper_ready(helper: str, runs: int) -> float:
    return python_as_user(HELPER_READY, helper, str(runs), env=user_env())


def run_times(runs: int) -> dict[str, float]:
    modes = {"none": [JAILPY, "run", "--net", "none", "--", "true"]}
    for helper in HELPERS:
        modes[helper] = [JAILPY, "run", "--net", helper, "--", "true"]
    return median_times(modes, runs, user_env())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per iperf3 run")
    parser.add_argument("--reps", type=int, default=2, help="iperf3 runs per mode/direction")
    parser.add_argument("--runs", type=int, default=20, help="start-up samples")
    args = parser.parse_args()
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cpus, kernel {os.uname().release}")
    for helper in HELPERS:
        version = subprocess.run([helper, "--version"], capture_output=True, text=True)
        print(f"{helper}: {(version.stdout or version.stderr).splitlines()[0]}")
    print(f"\nTCP throughput, iperf3 {args.seconds:g} s x {args.reps}, median Gbit/s "
          "(out: sandbox -> host, in: host -> sandbox)")
    rates = throughput(args.seconds, args.reps)
    base = rates["host loopback"]
    for mode, rate in rates.items():
        print(f"  {mode:<26} out {rate['out']:6.2f} ({rate['out'] / base['out']:4.2f}x)   "
              f"in {rate['in']:6.2f} ({rate['in'] / base['in']:4.2f}x)")
    print(f"\nhelper start-up, spawn to ready, median of {args.runs}")
    for helper in HELPERS:
        print(f"  {helper:<12} {helper_ready(helper, args.runs) * 1000:6.2f} ms")
    print(f"\njailpy run --net MODE -- true, median of {args.runs} (round-robin)")
    times = run_times(args.runs)
    for mode, seconds in times.items():
        extra = "" if mode == "none" else f"  (+{(seconds - times['none']) * 1000:.1f} ms)"
        print(f"  {mode:<12} {seconds * 1000:6.1f} ms{extra}")


if __name__ == "__main__":
    sys.exit(main())
