#!/usr/bin/env python3
"""`jailpy serve` under load: N requests of `python3 -c 'print(1)'` over the Unix socket.

Starts `jailpy serve` as the test user, sends the requests from C client
threads (stdlib http.client over the socket, one connection per request, as
curl would), and checks every answer (HTTP 200, exit 0, stdout "1\\n").
Reports latency p50/p99, the rate, and the server's RSS (the aiohttp process,
and its whole process tree: the pool's fork server and prepared sandboxes)
after the first 200 requests and at the end, so growth is visible. For scale,
the same command from cold `bwrap` (the isolation of bench/startup.py) at the
same concurrency, in the same run.

    python3 bench/serve.py [--requests 2000] [--concurrency 8] [--pool 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _common import JAILPY, USER, as_user, user_env

COMMAND = ["python3", "-c", "print(1)"]
WARM_UP = 200


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=120)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def request(path: str) -> float:
    """One POST /v1/run; its latency in seconds, after checking the answer."""
    body = json.dumps({"argv": COMMAND}).encode()
    start = time.perf_counter()
    connection = UnixConnection(path)
    try:
        connection.request("POST", "/v1/run", body=body)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    elapsed = time.perf_counter() - start
    doc = json.loads(data)
    if response.status != 200 or doc.get("exit_code") != 0 or doc.get("stdout") != "1\n":
        raise AssertionError(f"wrong answer: HTTP {response.status} {doc}")
    return elapsed


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    found = [pid]
    for parent in found:
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                found.extend(int(child) for child in children.read().split())
        except OSError:
            pass
    return found


def tree_rss_kib(pid: int) -> int:
    total = 0
    for member in tree(pid):
        try:
            total += rss_kib(member)
        except OSError:
            pass
    return total


def cold_bwrap(runs: int, concurrency: int) -> tuple[float, float]:
    """(p50 seconds, runs per second) of cold bwrap runs of COMMAND, C at a time."""
    home = user_env()["HOME"]
    argv = as_user(["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                    "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                    "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                    "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                    "--tmpfs", "/tmp", "--tmpfs", home, "--clearenv",
                    "--setenv", "PATH", "/usr/bin", "--", *COMMAND])

    def once(_: int) -> float:
        start = time.perf_counter()
        out = subprocess.run(argv, env=user_env(), cwd="/", capture_output=True, check=True)
        assert out.stdout == b"1\n", out
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        latencies = list(executor.map(once, range(runs)))
    return statistics.median(latencies), runs / (time.perf_counter() - start)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--bwrap-runs", type=int, default=400)
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="jailpy-bench-serve-", dir="/var/tmp")
    if os.geteuid() == 0:
        entry = pwd.getpwnam(USER)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    path = f"{directory}/serve.sock"
    log = open(f"{directory}/serve.log", "wb")
    # setpriv execs: server.pid is jailpy serve itself.
    server = subprocess.Popen(as_user([JAILPY, "serve", "--listen", f"unix:{path}",
                                       "--pool", str(args.pool), "--concurrency",
                                       str(args.concurrency), "--queue", "64"]),
                              env=user_env(), cwd="/", stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            assert server.poll() is None and time.monotonic() < deadline, \
                open(f"{directory}/serve.log").read()
            time.sleep(0.05)
        os.chmod(path, 0o600)  # (root connects anyway; the mode is the server's)
        latencies: list[float] = []
        samples: dict[str, tuple[int, int]] = {}
        series: list[int] = []  # the server's RSS (KiB) after every 200 requests
        lock = threading.Lock()

        def one(index: int) -> float:
            latency = request(path)
            with lock:
                latencies.append(latency)
                if len(latencies) % WARM_UP == 0:
                    series.append(rss_kib(server.pid))
                if len(latencies) == WARM_UP:
                    samples["after 200"] = (rss_kib(server.pid), tree_rss_kib(server.pid))
            return latency

        samples["start"] = (rss_kib(server.pid), tree_rss_kib(server.pid))
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as executor:
            list(executor.map(one, range(args.requests)))
        elapsed = time.perf_counter() - start
        samples["end"] = (rss_kib(server.pid), tree_rss_kib(server.pid))
        server.terminate()
        status = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)

    print(f"jailpy serve: {args.requests} requests of {' '.join(COMMAND)!r}, concurrency "
          f"{args.concurrency}, pool {args.pool}, over the Unix socket: all answers correct")
    print(f"  latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms; "
          f"rate {args.requests / elapsed:.0f} requests/s")
    for when, (own, whole) in samples.items():
        print(f"  RSS {when:>9}: server {own / 1024:.1f} MiB, with the pool {whole / 1024:.1f} MiB")
    growth = max(series) - series[0]
    print(f"  server RSS every {WARM_UP} requests (MiB): "
          f"{' '.join(f'{kib / 1024:.1f}' for kib in series)}")
    print(f"  server RSS growth after the first {WARM_UP} requests: at most {growth} KiB; "
          f"SIGTERM exit status {status}")
    if shutil.which("bwrap") and args.bwrap_runs:
        p50, rate = cold_bwrap(args.bwrap_runs, args.concurrency)
        print(f"cold bwrap, same command, concurrency {args.concurrency}, {args.bwrap_runs} "
              f"runs: p50 {p50 * 1000:.1f} ms, rate {rate:.0f} runs/s")


if __name__ == "__main__":
    main()
