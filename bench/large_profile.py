"""What validating and planning a profile with many mount ops costs (issue 11).

    python3 bench/large_profile.py [--ops 10000] [--runs 5] [--baseline VENV]

A profile of N tmpfs ops extending `default` is written to a temporary file;
each sample is a fresh interpreter of the given venv that resolves it
(load_policy: parse, check, expand, merge, convert) and plans it (build_plan,
which derives the Landlock rules and the guard ops), timed with perf_counter.
Samples of jailpy and of --baseline are interleaved so machine load hits them
alike; medians are printed. bwrap and firejail have no profiles to compare.
Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile

_SAMPLE = r"""
import os, sys, time
os.environ["JAILPY_NO_CACHE"] = "1"
from jailpy.api import load_policy, Sandbox
t0 = time.perf_counter()
policy = load_policy(sys.argv[1])
t1 = time.perf_counter()
Sandbox(policy).plan(["true"])
t2 = time.perf_counter()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", metavar="VENV", help="another venv to compare with")
    args = parser.parse_args()
    venvs = {"jailpy": os.environ.get("JAILPY_VENV", "/opt/jailpy/venv")}
    if args.baseline:
        venvs["jailpy@base"] = args.baseline
    ops = "".join(f'  {{ tmpfs = "/t/{i}" }},\n' for i in range(args.ops))
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(f'extends = ["default"]\n[filesystem]\nmounts = [\n{ops}]\n')
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in venvs}
    try:
        for _ in range(args.runs):
            for name, venv in venvs.items():
                out = subprocess.run([f"{venv}/bin/python", "-c", _SAMPLE, f.name],
                                     capture_output=True, text=True, timeout=600, cwd="/")
                if out.returncode != 0:
                    raise SystemExit(f"{name}: {out.stderr.strip().splitlines()[-1]}")
                load, plan = map(float, out.stdout.split())
                samples[name].append((load, plan))
    finally:
        os.unlink(f.name)
    print(f"profile of {args.ops} tmpfs ops over default; median of {args.runs} runs")
    for name, values in samples.items():
        load = statistics.median(v[0] for v in values)
        plan = statistics.median(v[1] for v in values)
        print(f"  {name:<12} validate {load:8.1f} ms   plan {plan:8.1f} ms")


if __name__ == "__main__":
    main()
