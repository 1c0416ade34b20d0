#!/usr/bin/env python3
"""A warm jailpy.Pool next to cold bwrap, from the same Python loop (docs/pool.md).

Everything runs in one process as the unprivileged user (the test user when
this runs as root): the pool's requests and bwrap's cold starts alternate in
one loop, so machine noise hits both alike. bwrap does the isolation of
jailpy's default profile (bench/startup.py's command line) and is started
with subprocess.run, as a Python service would start it.

    python3 bench/pool.py [--runs 300] [--sustained 2000] [--size 4]

Prints:
- latency of `true`: p50/p99 of Pool.run() and of a cold bwrap, and the ratio
  (target: pool p50 <= 0.5x bwrap p50);
- sustained rate over N requests with the pool refilling as it goes,
  sequential and from 4 threads, next to N sequential cold bwraps (target:
  pool >= bwrap);
- the CPU time one sandbox costs in all its processes (the fork server, its
  zygote and its sandboxes plus the caller; bwrap and the caller), which the
  machine's load does not skew the way it skews wall times;
- the whole machine's busy CPU time per run during the sequential sustained
  phases (/proc/stat, every CPU, kernel threads included: namespace teardown
  runs in kernel workers, and short-lived processes can escape the tick-based
  per-process figures). It only means something on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import VENV, as_user, user_env  # noqa: E402
from startup import commands  # noqa: E402

SCRIPT = textwrap.dedent("""
    import json, os, resource, statistics, subprocess, sys, time
    from concurrent.futures import ThreadPoolExecutor
    import jailpy

    runs, sustained, size = (int(a) for a in sys.argv[1:4])
    bwrap = sys.argv[4:]

    def cold():
        subprocess.run(bwrap, check=True, capture_output=True)

    def own_cpu(who=resource.RUSAGE_SELF):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def server_cpu(pid):
        # utime, stime, cutime, cstime of the fork server (its threads and its reaped
        # sandboxes) and of every live descendant: the zygote, the sandboxes prepared
        # or running (what they spent so far; counted at the start and at the end)
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:  # ended meanwhile
            return 0.0
        own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        return own + sum(server_cpu(int(kid)) for kid in kids)

    def machine_busy():
        # every CPU's non-idle time from /proc/stat (kernel threads included)
        ticks = [int(t) for t in open("/proc/stat").readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    def pct(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * p))] * 1000

    out = {}
    with jailpy.Pool(jailpy.load_policy("default"), size=size) as pool:
        assert pool.run(["true"]).exit_code == 0
        cold()
        lat = {"pool": [], "bwrap": []}
        for _ in range(runs):
            # one request at a time, each with the pool given time to refill: the
            # latency a request pays from a warm pool
            time.sleep(0.01)
            start = time.perf_counter()
            result = pool.run(["true"])
            lat["pool"].append(time.perf_counter() - start)
            assert result.exit_code == 0
            start = time.perf_counter()
            cold()
            lat["bwrap"].append(time.perf_counter() - start)
        for name, values in lat.items():
            out[name] = {"p50": pct(values, 0.5), "p99": pct(values, 0.99)}
        server = pool._server.process.pid
        cpu = server_cpu(server) + own_cpu()
        busy = machine_busy()
        start = time.perf_counter()
        for _ in range(sustained):
            assert pool.run(["true"]).exit_code == 0
        out["rate_pool_sequential"] = sustained / (time.perf_counter() - start)
        out["machine_pool"] = (machine_busy() - busy) * 1000 / sustained
        time.sleep(1)  # the last sandboxes torn down and reaped
        out["cpu_pool"] = (server_cpu(server) + own_cpu() - cpu) * 1000 / sustained
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as workers:
            codes = list(workers.map(lambda _: pool.run(["true"]).exit_code, range(sustained)))
        assert codes == [0] * sustained
        out["rate_pool_4_threads"] = sustained / (time.perf_counter() - start)
        out["stats"] = pool.stats()
    cpu = own_cpu() + own_cpu(resource.RUSAGE_CHILDREN)
    busy = machine_busy()
    start = time.perf_counter()
    for _ in range(sustained):
        cold()
    out["rate_bwrap_sequential"] = sustained / (time.perf_counter() - start)
    out["machine_bwrap"] = (machine_busy() - busy) * 1000 / sustained
    out["cpu_bwrap"] = (own_cpu() + own_cpu(resource.RUSAGE_CHILDREN) - cpu) * 1000 / sustained
    print(json.dumps(out))
""")


def main() -> None:
    import json
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sustained", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4)
    args = parser.parse_args()
    bwrap = commands()["bwrap"]
    proc = subprocess.run(as_user([f"{VENV}/bin/python", "-c", SCRIPT, str(args.runs),
                                   str(args.sustained), str(args.size), *bwrap]),
                          env=user_env(), cwd="/", check=True, capture_output=True, text=True)
    out = json.loads(proc.stdout)
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cpus, kernel {os.uname().release}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"latency of `true`, {args.runs} runs each, alternating (ms):")
    for name in ("pool", "bwrap"):
        print(f"  {name:<6} p50 {out[name]['p50']:6.2f}   p99 {out[name]['p99']:6.2f}")
    print(f"  pool/bwrap p50 ratio {out['pool']['p50'] / out['bwrap']['p50']:.2f}x "
          f"(target <= 0.5x)")
    print(f"sustained, {args.sustained} requests, pool of {args.size} refilling (runs/s):")
    for key in ("rate_pool_sequential", "rate_pool_4_threads", "rate_bwrap_sequential"):
        print(f"  {key[5:]:<18} {out[key]:7.1f}")
    print(f"CPU time per sandbox, all processes (ms): pool {out['cpu_pool']:.2f}, "
          f"bwrap {out['cpu_bwrap']:.2f} (ratio {out['cpu_pool'] / out['cpu_bwrap']:.2f}x)")
    print(f"machine CPU per run, sequential sustained phases (ms): pool "
          f"{out['machine_pool']:.2f}, bwrap {out['machine_bwrap']:.2f}")
    print(f"pool stats: {out['stats']}")


if __name__ == "__main__":
    main()
